"""Attacks: the proposed attack and the building blocks that attacks share.

Every attack here is a plain function with the one contract of SparseBench::

    attack(model, inputs, labels, *, targeted=False, **hyperparameters) -> Tensor

``inputs`` and the returned tensor lie in [0, 1]; ``model`` returns logits and
holds its own normalisation; when ``targeted`` is true, ``labels`` are the
target classes.
"""
