"""A command run under a launcher leaves no process group for the interpreter's exit to tear
down: gloo's threads outliving what they reference can abort a process that finished its work."""

from __future__ import annotations

import torch.distributed as dist
from click.testing import CliRunner

from slimbert.cli import cli


def test_a_command_destroys_the_process_group_it_ran_under(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        result = CliRunner().invoke(cli, ["export", "--help"])
        assert result.exit_code == 0, result.output
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_command_that_fails_leaves_the_group_to_the_process_exit(tmp_path):
    """Stopped or failed, a process may have a peer waiting in a collective with it: destroying
    the group then can hang both, where exiting makes the peer fail and the launcher stop."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        result = CliRunner().invoke(cli, ["export", "--model", str(tmp_path / "nowhere")])
        assert result.exit_code != 0
        assert dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_without_a_process_group_a_command_leaves_none():
    result = CliRunner().invoke(cli, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    assert not dist.is_initialized()
