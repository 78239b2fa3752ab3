"""What the adapter needs from llama-cpp-python that its public API does not offer.

llama-cpp-python's ``Llama`` builds its ``llama_model_params`` itself and exposes only
some of the fields as arguments. ``use_extra_bufts`` (llama.cpp's extra CPU buffer
types: weight repacking for AMX and for AVX2/NEON kernels) is not one of them, so the
one way to set it is to change the defaults ``Llama`` starts from while it loads. That
is done here, and only here, under a lock (loads run on worker threads). The public
equivalent is llama.cpp's own ``--no-repack`` / ``--no-extra-bufts`` flag of
llama-server, which the Python binding does not have.

Why it matters: on a CPU that advertises AMX (``/proc/cpuinfo`` flag ``amx_tile``),
llama.cpp repacks the weights for AMX and runs AMX instructions. Some virtual machines
advertise AMX, grant the process its tile state, and still fault on the instructions
(seen on Firecracker: "Illegal instruction" on the first decode). The adapter therefore
turns repacking off by default where AMX is advertised (``weight_repacking: auto``);
``weight_repacking: true`` turns it back on where AMX really works.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as bindings

_defaults_lock = threading.Lock()


@contextmanager
def model_defaults(**fields: Any) -> Iterator[None]:
    """While the block runs, ``llama_model_default_params()`` returns params with
    ``fields`` set (so a ``Llama`` created inside starts from them)."""
    if not fields:
        yield
        return
    with _defaults_lock:
        original = bindings.llama_model_default_params

        def patched() -> Any:
            params = original()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        bindings.llama_model_default_params = patched
        try:
            yield
        finally:
            bindings.llama_model_default_params = original


@cache
def cpu_advertises_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU says it has AMX tiles (Linux; False where it cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(
        line.startswith("flags") and "amx_tile" in line.split() for line in text.splitlines()
    )


def repack_weights(setting: bool | None) -> bool:
    """The ``weight_repacking`` setting resolved: ``None`` (auto) repacks unless the CPU
    advertises AMX (see the module doc)."""
    if setting is not None:
        return setting
    return not cpu_advertises_amx()


def load_model(repack: bool, **options: Any) -> llama_cpp.Llama:
    """``llama_cpp.Llama(**options)``, with llama.cpp's weight repacking on or off."""
    with model_defaults(**({} if repack else {"use_extra_bufts": False})):
        return llama_cpp.Llama(**options)
