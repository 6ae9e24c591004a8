"""The one compiled part of kdumpy (project metadata is in pyproject.toml).

kdumpy.collect._pagepack compresses a batch of pages in C (zlib, LZO); it is optional:
without a compiler or liblzo2-dev the install still succeeds and kdumpy.collect.compress
uses its pure-Python path, which writes the same bytes.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "kdumpy.collect._pagepack",
            ["src/kdumpy/collect/_pagepack.c"],
            libraries=["lzo2", "z"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
