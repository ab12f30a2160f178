"""What an attack may not change, checked after every call and put back.

Every attack is treated as hostile code, ours included. The runner hands an
attack copies of the images, labels and targets, and a model of its own (a
copy of the one that verifies); what it may not do to that model, or to the
torch it runs on, is checked here after each call:

- the model's mode (``train()``/``eval()`` on any module), its parameters
  and buffers (values, dtype, shape, device, ``requires_grad``), its hooks
  (forward, backward, pre-hooks, state-dict hooks), its submodules and the
  other attributes of every module, including a module's class and an
  instance attribute such as ``forward`` patched onto it;
- the classes of its modules (``nn.Linear.forward`` patched, say) and the
  torch namespaces verification relies on (``torch``, ``torch.nn.functional``,
  ``torch.Tensor``, ``torch.nn.Module``): an existing name rebound or
  deleted; for classes, a name added;
- torch's global module hooks (``register_module_forward_hook`` and kin).

:meth:`Guard.check` says, in words, what changed; :meth:`Guard.restore`
puts everything back, so that neither verification nor a later attack on
the same model inherits anything. The runner then records every sample of
the batch as invalid with that reason. Grad mode is put back silently: it
does not reach verification, which runs without gradients anyway.

The comparison of values is exact (``torch.equal`` against a copy taken
when the guard was made), not a checksum: it costs one read of the model's
memory per attack call, small beside any attack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional
from torch import Tensor, nn
from torch.nn.modules import module as _module_module

from bench.counting import CountingModel, PassTotals, timed

__all__ = ["AttackCall", "AttackVoid", "Guard", "call_attack"]

#: The namespaces whose functions decide a verdict; their existing names must keep their objects.
NAMESPACES: tuple[Any, ...] = (torch, torch.nn.functional, torch.Tensor, nn.Module)

_DICT_ATTRIBUTES = {
    "_parameters": "parameter", "_buffers": "buffer", "_modules": "submodule",
}


def _describe_dict(key: str) -> str:
    if key in _DICT_ATTRIBUTES:
        return _DICT_ATTRIBUTES[key]
    return key.strip("_").replace("_", " ").rstrip("s")  # "_forward_hooks" -> "forward hook"


@dataclass
class _ModuleState:
    module: nn.Module
    path: str
    cls: type
    attributes: dict[str, Any]
    """A shallow copy of the module's ``__dict__``."""
    dicts: dict[str, dict[Any, Any]]
    """Shallow copies of the dicts in it (parameters, buffers, submodules, every kind of hook)."""


def _module_state(path: str, module: nn.Module) -> _ModuleState:
    attributes = dict(vars(module))
    dicts = {key: dict(value) for key, value in attributes.items() if isinstance(value, dict)}
    return _ModuleState(module, f"model.{path}" if path else "model", type(module), attributes, dicts)


def _namespace_state(namespace: Any) -> dict[str, Any]:
    return dict(vars(namespace))


def _global_hook_dicts() -> dict[str, dict[Any, Any]]:
    return {name: value for name, value in vars(_module_module).items()
            if name.startswith("_global_") and isinstance(value, dict)}


def _classes(model: nn.Module) -> list[type]:
    seen: dict[type, None] = {}
    for module in model.modules():
        for cls in type(module).__mro__:
            if cls.__module__ != "builtins":
                seen.setdefault(cls)
    return list(seen)


#: Names Python itself adds to a class: ``copyreg`` caches ``__slotnames__`` on the first copy or pickle.
_BENIGN_ADDITIONS = frozenset({"__slotnames__"})


def _changed_names(before: Mapping[str, Any], after: Mapping[str, Any], *, additions: bool) -> list[str]:
    changed = [name for name, value in before.items() if name not in after or after[name] is not value]
    if additions:
        changed += [name for name in after if name not in before and name not in _BENIGN_ADDITIONS]
    return changed


class Guard:
    """A record of a model and of torch's global state, to check against and to restore.

    Parameters
    ----------
    model : nn.Module
        The model an attack is about to be given (its counting hooks already
        on it: they are part of what must not change).
    """

    def __init__(self, model: nn.Module) -> None:
        # torch._dynamo rebinds torch.manual_seed (and kin) when it is first imported, which any attack
        # may trigger without meaning to: import it before the record, so that nobody is blamed for it.
        import torch._dynamo  # noqa: F401

        self.model = model
        self._modules = [_module_state(path, module) for path, module in model.named_modules()]
        self._tensors: dict[str, tuple[Tensor, Tensor, bool]] = {}
        for state in self._modules:
            for kind in ("_parameters", "_buffers"):
                for name, tensor in state.dicts.get(kind, {}).items():
                    if tensor is not None:
                        self._tensors[f"{state.path}.{name}"] = (tensor, tensor.detach().clone(), tensor.requires_grad)
        self._namespaces = [(namespace, _namespace_state(namespace)) for namespace in NAMESPACES]
        self._classes = [(cls, _namespace_state(cls)) for cls in _classes(model) if cls not in NAMESPACES]
        self._hooks = {name: dict(value) for name, value in _global_hook_dicts().items()}
        self._grad_enabled = torch.is_grad_enabled()

    # ------------------------------------------------------------------ check

    def check(self) -> list[str]:
        """What the attack changed, one phrase each; empty when nothing."""
        problems: list[str] = []
        for state in self._modules:
            problems += self._module_problems(state)
        for name, (tensor, kept, requires_grad) in self._tensors.items():
            if (tensor.dtype != kept.dtype or tensor.shape != kept.shape or tensor.device != kept.device
                    or not torch.equal(tensor.detach(), kept)):
                problems.append(f"changed the values of {name}")
            if tensor.requires_grad != requires_grad:
                problems.append(f"set requires_grad={tensor.requires_grad} on {name}")
        for namespace, saved in self._namespaces:
            problems += [f"patched {_qualified(namespace)}.{name}"
                         for name in _changed_names(saved, vars(namespace), additions=isinstance(namespace, type))]
        for cls, saved in self._classes:
            problems += [f"patched {_qualified(cls)}.{name}"
                         for name in _changed_names(saved, vars(cls), additions=True)]
        for name, saved in self._hooks.items():
            current = vars(_module_module).get(name)
            if current is None or current.keys() != saved.keys():
                problems.append(f"changed torch's {name.strip('_').replace('_', ' ')}")
        return problems

    def _module_problems(self, state: _ModuleState) -> list[str]:
        module, path = state.module, state.path
        problems = []
        if type(module) is not state.cls:
            problems.append(f"changed the class of {path} to {type(module).__name__}")
        current = vars(module)
        for key in _changed_names(state.attributes, current, additions=True):
            if key == "training":
                mode = "training" if module.training else "eval"
                problems.append(f"put {path} in {mode} mode")
            elif key in state.dicts and isinstance(current.get(key), dict):
                continue  # the dict itself was swapped: its content is compared below
            else:
                problems.append(f"changed attribute {path}.{key}")
        for key, saved in state.dicts.items():
            now = current.get(key)
            if not isinstance(now, dict):
                continue  # reported above
            for name in _changed_names(saved, now, additions=True):
                verb = "added" if name not in saved else "removed" if name not in now else "replaced"
                problems.append(f"{verb} a {_describe_dict(key)} on {path}" +
                                (f" ({name})" if key in _DICT_ATTRIBUTES else ""))
        return problems

    # ---------------------------------------------------------------- restore

    def restore(self) -> None:
        """Put the model and torch back as they were when the guard was made."""
        for state in self._modules:
            module = state.module
            if type(module) is not state.cls:
                module.__class__ = state.cls
            current = vars(module)
            for key in list(current):
                if key not in state.attributes:
                    del current[key]
            for key, value in state.attributes.items():
                current[key] = value
            for key, saved in state.dicts.items():
                _refill(state.attributes[key], saved)
        with torch.no_grad():
            for tensor, kept, requires_grad in self._tensors.values():
                if (tensor.dtype != kept.dtype or tensor.shape != kept.shape or tensor.device != kept.device
                        or not torch.equal(tensor.detach(), kept)):
                    tensor.data = kept.clone()
                tensor.requires_grad_(requires_grad)
        for namespace, saved in self._namespaces:
            _restore_namespace(namespace, saved, additions=isinstance(namespace, type))
        for cls, saved in self._classes:
            _restore_namespace(cls, saved, additions=True)
        for name, saved in self._hooks.items():
            hooks = vars(_module_module).get(name)
            if not isinstance(hooks, dict):
                setattr(_module_module, name, hooks := {})
            _refill(hooks, saved)
        torch.set_grad_enabled(self._grad_enabled)

    def check_and_restore(self) -> str:
        """The changes joined into one reason ("" when none), everything put back either way."""
        problems = self.check()
        if problems:
            self.restore()
        torch.set_grad_enabled(self._grad_enabled)
        return "the attack " + "; ".join(_dedupe(problems)) if problems else ""


def _refill(target: dict[Any, Any], saved: Mapping[Any, Any]) -> None:
    if target.keys() != saved.keys() or any(target[k] is not v for k, v in saved.items()):
        target.clear()
        target.update(saved)


def _restore_namespace(namespace: Any, saved: Mapping[str, Any], *, additions: bool) -> None:
    for name in _changed_names(saved, vars(namespace), additions=additions):
        if name in saved:
            setattr(namespace, name, saved[name])
        else:
            delattr(namespace, name)


def _qualified(namespace: Any) -> str:
    if isinstance(namespace, ModuleType):
        return namespace.__name__
    return f"{namespace.__module__}.{namespace.__qualname__}"


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass
class AttackCall:
    """One guarded attack call: what came back, and whether the call counts."""

    returned: object
    """What the attack returned, untouched: :func:`bench.verify.verify` judges it."""
    void: str
    """Why every example of the call is invalid ("" when the call counts): it raised, or tampered."""
    seconds: float
    passes: PassTotals
    peak_memory_mib: float | None = None


class AttackVoid(RuntimeError):
    """An attack call that raised or tampered, where the caller has no rows to mark invalid (``bench``)."""


def call_attack(attack: Callable[..., Any], counting: CountingModel, guard: Guard, images: Tensor, labels: Tensor,
                targets: Tensor | None = None, *, clock: str = "wall") -> AttackCall:
    """Run ``attack`` on copies of its inputs, timed and counted, then check and restore what it may not change.

    The attack gets fresh copies of ``images``, ``labels`` and ``targets``:
    what it does to them never reaches the originals, against which the
    caller verifies and measures. ``counting`` wraps the attack's own model
    (a copy of the one that verifies), which ``guard`` watches. The clock
    (synchronised with the device at both ends; ``clock`` as in
    :func:`bench.counting.timed`) covers the call alone; on CUDA the peak
    memory allocated during it is recorded too.
    """
    device = images.device
    cuda = device.type == "cuda"
    goal = targets if targets is not None else labels
    own_images, own_goal = images.clone(), goal.clone()
    before = counting.totals()
    void = ""
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with timed(device, clock) as seconds:
        try:
            returned: object = attack(counting, own_images, own_goal, targeted=targets is not None)
        except Exception as exc:  # the run goes on; the call counts as failed and says why
            void, returned = f"attack raised {type(exc).__name__}: {exc}", None
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    tampered = guard.check_and_restore()
    written = [name for name, own, original in (("inputs", own_images, images), ("labels or targets", own_goal, goal))
               if own.shape != original.shape or own.dtype != original.dtype or not torch.equal(own, original)]
    if written:
        tampered = "; ".join(filter(None, [tampered, f"the attack wrote into the {' and '.join(written)} it was given"]))
    after = counting.totals()
    if not after.covers(before):
        tampered = "; ".join(filter(None, [tampered, "the attack rewound the harness's pass counts"]))
        after = before
    void = "; ".join(filter(None, [void, tampered]))
    # A subclass could override clone: verify refuses it. (isinstance is for mypy: type() does not narrow.)
    if type(returned) in (Tensor, nn.Parameter) and isinstance(returned, Tensor):
        returned = returned.detach().clone()  # nothing the attack keeps can change it after the call
    return AttackCall(returned, void, seconds[0], after - before, peak)
