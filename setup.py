"""The compiled parts of kdumpy (project metadata is in pyproject.toml).

kdumpy._tables walks a dump's BTF and kallsyms tables when a dump is opened (start-up
time); it is optional too: kdumpy.tables has the same functions in Python.

kdumpy.collect._pagepack compresses a batch of pages in C (zlib and LZO, plus snappy and
zstd when libsnappy-dev / libzstd-dev are installed: their headers are looked for here);
it is optional: without a compiler or liblzo2-dev the install still succeeds and
kdumpy.collect.compress uses its pure-Python path, which writes the same bytes (snappy:
equally valid bytes from another implementation of the format).
"""

import os

from setuptools import Extension, setup

INCLUDE_DIRS = ("/usr/include", "/usr/local/include")
OPTIONAL = {"HAVE_SNAPPY": ("snappy-c.h", "snappy"), "HAVE_ZSTD": ("zstd.h", "zstd")}


def _found(header: str) -> bool:
    return any(os.path.exists(os.path.join(d, header)) for d in INCLUDE_DIRS)


macros = [(name, "1") for name, (header, _lib) in OPTIONAL.items() if _found(header)]
libraries = ["lzo2", "z"] + [OPTIONAL[name][1] for name, _ in macros]

setup(
    ext_modules=[
        Extension(
            "kdumpy.collect._pagepack",
            ["src/kdumpy/collect/_pagepack.c"],
            libraries=libraries,
            define_macros=macros,
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "kdumpy._tables",
            ["src/kdumpy/_tables.c"],
            libraries=["z"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
