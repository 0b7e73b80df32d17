"""Import sh without the modules it imports but a CNI call never uses: three quarters of its import time
(docs/performance.md). SystemHost (host.py) imports sh through import_sh(), before any command is timed.
"""
import importlib
import os
import sys
import types


def import_sh():
    """Import sh, lean: while sh imports, each module in STAND_INS is a stand-in (unless already imported) that
    answers the few names sh uses in every call itself and imports the real module for anything else, at first
    use. So sh works in full, and any later import of these modules, by anyone, gets the real ones.
    """
    if "sh" in sys.modules:
        return
    stand_ins = [name for name in STAND_INS if name not in sys.modules]  # imported already: nothing to save
    sys.modules.update((name, _on_demand(name, STAND_INS[name])) for name in stand_ins)
    try:
        import sh  # noqa: F401
    finally:
        for name in stand_ins:
            del sys.modules[name]


def _on_demand(name, answers):
    """A module that answers `answers` itself and imports the real `name` for anything else."""
    module = types.ModuleType(name, f"stands in for {name} while sh has not needed it")

    def real_attribute(attribute):
        if attribute.startswith("__"):  # the import system probing (`from asyncio import X` asks __path__)
            raise AttributeError(attribute)
        real = importlib.import_module(name)
        if real is module:  # sh itself, while importing, asks for something not in answers
            raise ImportError(f"sh needs {name}.{attribute} at import: answer it in lean_sh.STAND_INS")
        return getattr(real, attribute)

    module.__getattr__ = real_attribute
    module.__dict__.update(answers)
    return module


def _running_loop():
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # no event loop can run before asyncio is imported
        raise RuntimeError("no running event loop")  # what asyncio.get_running_loop says then
    return asyncio.get_running_loop()


def _async_queue(*args, **kwargs):
    return importlib.import_module("asyncio").Queue(*args, **kwargs)


class _Logger:
    """What sh gets from logging.getLogger(name): the real logger, once anything has imported logging.
    Until then nothing can have configured logging, so a record below WARNING (sh emits only debug and
    info) would be dropped by the real logger too; anything else imports logging."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attribute):
        if attribute in ("debug", "info") and "logging" not in sys.modules:
            return _drop
        return getattr(importlib.import_module("logging").getLogger(self.name), attribute)


def _drop(*args, **kwargs):
    pass


class _Annotation:
    """What sh's annotations are made of while typing is stood in for: any subscript of it is itself. They are
    stored in sh's __annotations__, which nothing reads (the plugin does not, sh itself does not)."""

    def __getitem__(self, item):
        return self


class _NoSuchPackage(ModuleNotFoundError):
    pass


def _no_version(name):
    raise _NoSuchPackage(name)


# What sh uses of each module at import and in every call, answered without importing it (see
# docs/performance.md for what each costs). Only importlib.metadata answers differently: it knows no distribution,
# so sh takes its own fallback, __version__ = "unknown", instead of loading email, zipfile, csv...
STAND_INS = {
    "asyncio": {"get_running_loop": _running_loop, "Queue": _async_queue},  # `await` needs a running loop
    "logging": {"getLogger": _Logger},
    "traceback": {}, "textwrap": {}, "inspect": {},  # for error reports and output callbacks only
    "platform": {"system": lambda: os.uname().sysname},  # what platform.system() returns on Linux
    "importlib.metadata": {"version": _no_version, "PackageNotFoundError": _NoSuchPackage},
    # sh annotates a few globals and a class attribute (`Dict[str, Type[ErrorReturnCode]]`); nothing reads them
    "typing": {name: _Annotation() for name in ("Any", "Dict", "Type", "Union")},
}
