"""`zerotrain train`: the main job trains on 2 CPU ranks (through zerotrain launch + mpirun) and the loss falls."""
import re


def test_train_two_cpu_ranks_loss_falls(run, examples):
    proc = run("train", "--config", examples / "train_cpu.json", "--model", "llama-byte-small", "--steps", 60,
               "--ranks", 2, "--log-every", 20, "--device", "cpu", check_rc=0)
    out = proc.stdout
    assert "2 rank(s) on cpu, ZeRO stage 2" in out, out
    losses = [float(m) for m in re.findall(r"\| loss ([0-9.]+) \|", out)]
    assert len(losses) == 3, out
    assert losses[0] < 5.0 and losses[-1] < losses[0] - 0.3, losses
    assert "done: 60 steps, 960 samples, 0 skipped" in out


def test_train_rejects_unknown_model(run, examples):
    proc = run("train", "--config", examples / "train_cpu.json", "--model", "gpt5", "--ranks", 1)
    assert proc.returncode == 1
    assert "gpt5" in proc.stderr and "llama-byte-small" in proc.stderr
