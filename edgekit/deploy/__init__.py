"""``edgekit deploy``: take a bundle to a device over SSH and prove it runs there.

- ``ssh.py``      the system OpenSSH client: argument lists, keys only, host keys checked
- ``wheels.py``   edgekit's wheel (built from the checkout) and ``--offline`` runtime wheels
- ``plan.py``     what ships to a target: its artifacts, the rewritten manifest, the wheels
- ``agent/``      the device side (stdlib only, sent on each call): ``main`` answers the
                  commands (releases, venv, smoke, env, imx500) over shared helpers (files,
                  lock, systemd)
- ``shipping.py`` the agent's modules bundled into the one script ssh's stdin carries
- ``remote.py``   one ssh call per agent step
- ``smoke.py``    the device's answers against the workstation's
- ``service.py``  the systemd user unit
- ``release.py``  the steps in order: deploy, rollback, status
- ``report.py``   what they report

Many devices (``--inventory``), through Ansible:

- ``inventory.py``    Ansible run in isolation; the hosts of an inventory (ansible-inventory)
- ``playbook.py``     the playbook folder: ansible.cfg, plays, the plans, the role
- ``ansible/``        the role: one task, one action plugin that drives the same agent
- ``fleet.py``        plans once per target, ansible-playbook, each host's result
- ``fleet_report.py`` the per-host table
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgekit.deploy.release import DeployRequest, deploy, rollback, status
    from edgekit.deploy.ssh import Host, SshOptions, parse_host

# Loaded when first asked for (PEP 562): the loop imports the agent's one definition of the
# sensor source (agent/imx500_device.py), and that must not load the deploy machinery, which
# imports the loop back.
_PUBLIC = {"DeployRequest": "release", "deploy": "release", "rollback": "release",
           "status": "release", "Host": "ssh", "SshOptions": "ssh", "parse_host": "ssh"}
__all__ = ["DeployRequest", "Host", "SshOptions", "deploy", "parse_host", "rollback", "status"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
