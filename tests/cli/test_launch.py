"""`zerotrain launch`: DeepSpeed launcher flags zerotrain does not implement are an error that says what to do."""


def test_autotuning_is_an_error_naming_the_flag_and_the_way_out(run):
    err = run("launch", "--autotuning", "tune", "echo", "hi", check_rc=1).stderr
    assert "--autotuning tune" in err
    assert "no autotuner yet" in err and "without --autotuning" in err
    assert "zerotrain autotune" not in err  # no such command
