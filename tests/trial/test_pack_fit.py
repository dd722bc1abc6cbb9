"""`harness doctor --pack-fit`: how many members of a pack fit, from the measured peaks of packs of 1 and 2."""

from __future__ import annotations

import pytest

from harness.trial.pack_fit import PackFit, measure_pack_fit, members_that_fit
from helpers import assert_one_line_error, run_cli


def test_members_that_fit_is_the_room_over_the_base_in_members() -> None:
    # one member costs 200 MiB, so the base is 1,000 - 200 = 800, and 10,000 - 800 holds 46 members
    assert members_that_fit(10_000, 1_000, 1_200) == 46
    assert members_that_fit(700, 1_000, 1_200) == 0  # not even the base fits
    assert members_that_fit(10_000, 1_000, 1_000.5) is None  # below the meter's resolution
    fit = PackFit("m", "nf4", 8, 128, 16, "cpu", 1_000, 1_200, 10_000, 3.0)
    assert (fit.base_mb, fit.per_member_mb, fit.fits) == (800, 200, 46)
    assert "base 800 MiB + 200 MiB per member" in fit.line() and "about 46 members fit" in fit.line()
    assert "resolves" in PackFit("m", "nf4", 8, 128, 16, "cpu", 1_000, 1_000, 10_000, 3.0).line()


@pytest.mark.integration
def test_measure_pack_fit_trains_packs_of_one_and_two(tiny_checkpoint: str) -> None:
    fit = measure_pack_fit("tiny-llama", "nf4", batch=2, seq=16, rank=4, steps=1)
    assert fit.peak_one_mb > 0 and fit.peak_two_mb > 0 and fit.available_mb > fit.peak_one_mb
    assert fit.device == "cpu" and "tiny-llama nf4" in fit.line()


@pytest.mark.integration
@pytest.mark.usefixtures("tiny_checkpoint")
def test_doctor_pack_fit_on_the_command_line() -> None:
    proc = run_cli("doctor", "--quick", "--pack-fit", "tiny-llama", "--mode", "none", "--batch", "2", "--seq", "16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pack fit        tiny-llama none, LoRA r 16" in proc.stdout
    bad = run_cli("doctor", "--quick", "--pack-fit", "tiny-llama", "--mode", "nf3")
    assert_one_line_error(bad, "--mode", "nf3")
    assert_one_line_error(run_cli("doctor", "--quick", "--pack-fit", "tiny-llama", "--seq", "4"), "--seq")
    assert_one_line_error(run_cli("doctor", "--quick", "--pack-fit", "tiny-llama", "--seq", "4"), "--seq")
