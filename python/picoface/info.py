"""Build and machine facts: what was compiled in and what runs here."""

import platform

from picoface import _core


def build_info() -> dict:
    """Returns the compiler, ISAs compiled in, ISAs this CPU runs, the selected ISA,
    CPU features, the pybind11 version and the package version.

    The selected ISA honours the ``PICOFACE_ISA`` environment variable (read at import) and
    :func:`picoface.set_isa`.
    """
    from picoface import __version__

    info = dict(_core.build_info())
    info["version"] = __version__
    info["machine"] = platform.machine()
    info["python"] = platform.python_version()
    return info
