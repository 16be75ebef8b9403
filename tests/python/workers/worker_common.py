"""Helpers shared by the Python test workers (imported from the workers' own directory)."""
import torch
import torch.nn.functional as F
import torch.distributed as dist


def check(name, ok, detail=""):
    """Prints a PASS/FAIL line for this rank (the tests count them); returns ok."""
    print(f"{'PASS' if ok else 'FAIL'} rank{dist.get_rank()} {name} {detail}", flush=True)
    return ok


def regression_step(engine, x, y, micro):
    """One engine step of MSE regression on this rank's micro-batch of the global (x, y) (on the host; moved to the
    engine's device); returns the loss averaged over ranks (the unsharded loss on the whole batch)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    lo = rank * micro
    loss = F.mse_loss(engine(x[lo:lo + micro].to(engine.device)), y[lo:lo + micro].to(engine.device))
    engine.backward(loss)
    engine.step()
    total = loss.detach().clone()
    dist.all_reduce(total)
    return total.item() / world
