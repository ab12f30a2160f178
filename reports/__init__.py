"""Reports: tables, plots and checks computed from the results store."""
