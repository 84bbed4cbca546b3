from setuptools import Extension, setup

# optional: a machine without a compiler or libjpeg headers installs the
# package without the module, and Aperture decodes with Pillow alone.
setup(ext_modules=[Extension("jpegrows", ["jpegrows.c"], libraries=["jpeg"], optional=True,
                             extra_compile_args=["-O2", "-Wall"])])
