"""Build hook: the wheel carries the top-level ``targets/`` folder as ``edgekit/_targets/``.

Everything else about the package is in pyproject.toml. The device profiles live in one folder
at the top of the repository (easy to find and edit); when a wheel is built, this copies
``targets/*.toml`` into the package, where ``edgekit.deploy.targets`` finds them once installed.
An editable install needs no copy: edgekit reads the checkout's ``targets/`` directly.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithTargets(build_py):
    """build_py, plus the device profiles copied into edgekit/_targets/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "edgekit" / "_targets"
        self.mkpath(str(dest))
        for profile in sorted((ROOT / "targets").glob("*.toml")):
            self.copy_file(str(profile), str(dest / profile.name))


setup(cmdclass={"build_py": BuildPyWithTargets})
