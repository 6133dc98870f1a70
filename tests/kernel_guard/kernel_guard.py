"""Make numpy's CPU-dispatched transcendental kernels fail loudly in this process.

numpy picks SIMD kernels for ``power``, ``exp``, ``log``, trigonometric and hyperbolic ufuncs
by CPU (AVX2, AVX-512/SVML, NEON), and their last bits differ between machines. A test that
only compares outputs with and without SIMD can see the kernels of the CPU it runs on, not
those of a machine it lacks. This guard sees every call whatever the CPU: it swaps the
floating-point inner loops of those ufuncs, through numpy's public ufunc C-API
(``PyUFunc_ReplaceLoopBySignature``), for one that prints where it was called from and ends
the process with exit code 97. ``x ** 1.5`` on an array is caught too, because ndarray's
operator calls the ``power`` ufunc; scalar arithmetic (``np.float64(2.0) ** 1.5``, Python's
``math``) uses no dispatched kernel and passes.

Calls from matplotlib's own drawing code (its polar axes use ``np.tan``) go through to the
original kernel: a figure is a picture, written as SVG coordinates to 6 digits or as pixels,
never a number the toolkit prints. Every other caller is fatal.

Installed by ``sitecustomize.py`` beside this file when TOOLKIT_KERNEL_GUARD=1, so that every
process of a pipeline (CLI, fork server, loky and dask workers) carries it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import traceback

import numpy as np

EXIT_CODE = 97

# ufuncs numpy (or a future numpy) may dispatch to CPU-specific kernels whose results differ in
# the last bits: every transcendental, including the ones that take two arguments.
FORBIDDEN = ("power", "float_power", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "cbrt",
             "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh",
             "arcsinh", "arccosh", "arctanh", "logaddexp", "logaddexp2")

_FLOAT_TYPES = {"f": 11, "d": 12, "g": 13}  # NPY_FLOAT, NPY_DOUBLE, NPY_LONGDOUBLE
_REPLACE_LOOP = 30  # PyUFunc_ReplaceLoopBySignature's slot in numpy's ufunc C-API table

_LOOP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_keep: list[object] = []  # the callbacks must outlive install()


ALLOWED_CALLERS = ("matplotlib",)  # packages whose calls reach the original kernel (see above)


def _caller() -> traceback.FrameSummary | None:
    """The innermost frame outside numpy: the line that made the call."""
    numpy_dir = os.path.dirname(np.__file__)
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not frame.filename.startswith(numpy_dir):
            return frame
    return None


def _allowed(frame: traceback.FrameSummary | None) -> bool:
    parts = os.path.normpath(frame.filename).split(os.sep) if frame else []
    return any(p in parts for p in ALLOWED_CALLERS) and "site-packages" in parts


def _stop(name: str, sig: str, original: int):
    kernel = _LOOP(original)

    def loop(args, dims, steps, data):  # the ufunc inner-loop signature
        frame = _caller()
        if _allowed(frame):
            kernel(args, dims, steps, data)
            return
        where = f"{frame.filename}:{frame.lineno} ({frame.line})" if frame else "unknown caller"
        sys.stderr.write(f"kernel guard: np.{name} ({sig}) on an array at {where}\n")
        sys.stderr.write("".join(traceback.format_stack()[:-1]))
        sys.stderr.flush()
        os._exit(EXIT_CODE)

    return _LOOP(loop)


def install() -> list[str]:
    """Replace every floating-point loop of the FORBIDDEN ufuncs; returns what was replaced."""
    try:
        from numpy._core import _multiarray_umath  # numpy 2
    except ImportError:  # numpy 1.26, which the project still allows
        from numpy.core import _multiarray_umath

    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    table = ctypes.cast(get(_multiarray_umath._UFUNC_API, None), ctypes.POINTER(ctypes.c_void_p))
    replace = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.py_object, _LOOP, ctypes.POINTER(ctypes.c_int),
                               ctypes.POINTER(ctypes.c_void_p))(table[_REPLACE_LOOP])
    done = []
    for name in FORBIDDEN:
        ufunc = getattr(np, name, None)
        if ufunc is None:
            continue
        for sig in dict.fromkeys(ufunc.types):
            ins, out = sig.split("->")
            if not all(c in _FLOAT_TYPES for c in ins + out):
                continue
            codes = (ctypes.c_int * (len(ins) + len(out)))(*(_FLOAT_TYPES[c] for c in ins + out))
            # first swap in a placeholder to learn the original loop, then the real guard
            placeholder = _LOOP(lambda *a: None)
            original = ctypes.c_void_p()
            if replace(ufunc, placeholder, codes, ctypes.byref(original)) != 0 or not original.value:
                continue
            callback = _stop(name, sig, original.value)
            replace(ufunc, callback, codes, ctypes.byref(ctypes.c_void_p()))
            _keep.extend((placeholder, callback))
            done.append(f"{name} {sig}")
    return done
