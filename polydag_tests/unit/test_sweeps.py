from polydag.defs.step_importance.sweeps import contiguous_ranges


def test_ranges_never_straddle_done_keys_and_respect_max_len():
    ordered = [f"p{i}" for i in range(10)]
    wanted = {"p0", "p1", "p2", "p4", "p5", "p6", "p7", "p9"}
    assert contiguous_ranges(ordered, wanted, 3) == [
        ["p0", "p1", "p2"], ["p4", "p5", "p6"], ["p7"], ["p9"]]


def test_nothing_wanted_gives_no_runs():
    assert contiguous_ranges(["a", "b"], set(), 5) == []
