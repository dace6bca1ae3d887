"""Finding an implementation by name, the way a user's own adapter is found.

- A registered name: the entry point group ``backprop_crosscheck.implementations`` (pyproject.toml
  ``[project.entry-points."backprop_crosscheck.implementations"]``) maps a name to a factory;
  ``NAME:OPTION`` passes OPTION to it (``torch:cuda:0``).  The built-in implementations register
  there exactly as a user's package would.
- ``module:attr`` for an adapter that is not installed (``tests.my_port:MyNet``): ``attr`` is a
  factory (a class, say) called with no argument, or an implementation object itself.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

GROUP = "backprop_crosscheck.implementations"
METHODS = ("info", "unavailable", "forward_backward", "train", "predict")


class ImplementationError(ValueError):
    """An implementation name that cannot be resolved or an object that is not an implementation."""


class Attributed:
    """An implementation as the check holds it: every attribute is the implementation's own, and an
    exception raised by one of its protocol methods carries a note naming the role, the implementation
    and the method (the command line prints it with the error).  ``source`` is the name it was loaded
    by (``myport.adapter:MyNet``), None for an object handed over directly."""

    def __init__(self, impl, role: str, source: str | None = None):
        self.impl, self.role, self.source = impl, role, source

    def __getattr__(self, attr):
        if attr.startswith("__") or "impl" not in self.__dict__:  # copy/pickle probe before __init__ ran
            raise AttributeError(attr)
        value = getattr(self.impl, attr)
        if attr not in (*METHODS, "forward_loss") or not callable(value):
            return value

        def call(*args, **kwargs):
            try:
                return value(*args, **kwargs)
            except Exception as e:
                if not getattr(e, "__notes__", None):
                    e.add_note(f"raised in the {self.role} ({self.impl.name})'s {attr}")
                raise
        return call


def attributed(impl, role: str, source: str | None = None) -> Attributed:
    return impl if isinstance(impl, Attributed) else Attributed(impl, role, source)


def registered() -> dict:
    """name -> entry point of every installed implementation."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load(name: str, role: str = "implementation"):
    """The implementation called ``name`` (see the module docstring); ``role`` names the option in errors."""
    if not isinstance(name, str) or not name:
        raise ImplementationError(f"--{role}: expected an implementation name, got {name!r}")
    eps = registered()
    base, _, option = name.partition(":")
    try:
        if base in eps:
            impl = eps[base].load()(option or None)
        elif ":" in name:
            module, _, attr = name.rpartition(":")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            if not isinstance(obj, type) and all(hasattr(obj, m) for m in METHODS):
                impl = obj
            elif callable(obj):
                try:
                    impl = obj()
                except TypeError as e:
                    raise ImplementationError(f"--{role} {name!r} is not an implementation: calling {attr} with no "
                                              f"argument failed ({e}); expected a class, factory or object "
                                              "(see compare.protocol.Implementation)") from None
            else:
                impl = obj
        else:
            raise ImplementationError(f"--{role} {name!r}: no implementation of that name; registered: "
                                      f"{sorted(eps) or 'none (is the project installed? pip install -e .)'}, "
                                      "or give module:attr")
    except ModuleNotFoundError as e:
        raise ImplementationError(f"--{role} {name!r}: {e} (run from the folder that holds it, or add that folder "
                                  "to PYTHONPATH)") from None
    except AttributeError as e:
        raise ImplementationError(f"--{role} {name!r}: {e}") from None
    missing = [m for m in METHODS if not callable(getattr(impl, m, None))]
    if missing:
        raise ImplementationError(f"--{role} {name!r} is not an implementation: it lacks {missing} "
                                  "(see compare.protocol.Implementation)")
    if not getattr(impl, "name", None):
        impl.name = name
    return Attributed(impl, role, name)
