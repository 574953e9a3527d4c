"""Progress of long work: a terminal bar on stderr and throttled lines in the log."""

import logging

from polydag.core.ops.progress import progress


def test_bar_on_stderr_and_a_final_log_line(monkeypatch, capsys, caplog):
    monkeypatch.setenv("POLYDAG_PROGRESS", "1")
    with caplog.at_level(logging.INFO, logger="t"), progress(4, "train", unit="step", logger=logging.getLogger("t"),
                                                             log_every_s=3600) as bar:
        for _ in range(4):
            bar.update(1, loss=0.123456)
    err = capsys.readouterr().err
    assert "train:" in err and "/4 [" in err and "step/s" in err  # tqdm's bar
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1  # throttled to the final line
    assert lines[0].startswith("train 4/4 step  loss 0.123  ") and "step/s  ETA 0s" in lines[0]


def test_no_bar_when_switched_off(monkeypatch, capsys):
    monkeypatch.setenv("POLYDAG_PROGRESS", "0")
    with progress(2, "embed", unit="text", logger=logging.getLogger("t")) as bar:
        bar.update(2)
    assert capsys.readouterr().err == ""
