"""Build hook: the wheel carries the top-level ``targets/`` folder as ``edgekit/_targets/`` and
what ``edgekit demo`` needs of ``models/`` as ``edgekit/_examples/``.

Everything else about the package is in pyproject.toml. The device profiles and the example
models live in folders at the top of the repository (easy to find and edit); when a wheel is
built, this copies them into the package, where ``edgekit.deploy.targets`` and ``edgekit.demo``
find them once installed. An editable install needs no copy: edgekit reads the checkout's
folders directly. The wheel deploy builds for a device is made from a copy without ``models/``
(``edgekit.deploy.wheels.SOURCE_ITEMS``), so the examples never travel to a device.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


# What the demo reads of an example: the model, its model card, labels, calibration and
# validation sets, and the clip recipes (not train.py, which needs the training data).
EXAMPLE_FILES = ("*.keras", "*.edgekit.json", "labels.txt", "*.npz", "make_clip.py", "scenes.py")


class BuildPyWithTargets(build_py):
    """build_py, plus the device profiles copied into edgekit/_targets/ and the examples'
    files into edgekit/_examples/NAME/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "edgekit" / "_targets"
        self.mkpath(str(dest))
        for profile in sorted((ROOT / "targets").glob("*.toml")):
            self.copy_file(str(profile), str(dest / profile.name))
        for example in sorted((ROOT / "models").glob("*/*.keras")):
            folder = Path(self.build_lib) / "edgekit" / "_examples" / example.parent.name
            self.mkpath(str(folder))
            for pattern in EXAMPLE_FILES:
                for path in sorted(example.parent.glob(pattern)):
                    self.copy_file(str(path), str(folder / path.name))


setup(cmdclass={"build_py": BuildPyWithTargets})
