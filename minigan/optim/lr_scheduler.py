"""Learning-rate schedules with torch.optim.lr_scheduler's names and semantics.

    opt = Adam(G.parameters(), lr=2e-4)
    sched = LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=1000)
    for step in range(1000):
        ...; opt.step(); sched.step()       # after the optimizer, as in PyTorch

A schedule sets `optimizer.lr` from the learning rate the optimizer had when the schedule was
made (`base_lrs`, one entry: minigan's optimizers have one parameter group) and the number of
`step()` calls so far (`last_epoch`, which counts steps or epochs, whichever the caller steps
it by). Constructing one applies its factor for step 0 at once, as PyTorch's do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class LRScheduler:
    """Base class: subclasses give the factor of the base learning rate at step `last_epoch`."""

    def __init__(self, optimizer, last_epoch: int = -1):
        self.optimizer = optimizer
        if last_epoch == -1:
            optimizer.initial_lr = getattr(optimizer, "initial_lr", optimizer.lr)
        elif not hasattr(optimizer, "initial_lr"):
            raise KeyError("param 'initial_lr' is not specified for the optimizer when resuming "
                           f"a schedule (last_epoch={last_epoch}); make the schedule with "
                           "last_epoch=-1 first, or load its state_dict")
        self.base_lrs = [optimizer.initial_lr]
        self.last_epoch = last_epoch
        self.step()

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def get_last_lr(self) -> list[float]:
        """The learning rate the last `step()` set."""
        return list(self._last_lr)

    def step(self) -> None:
        self.last_epoch += 1
        (self.optimizer.lr,) = self._last_lr = self.get_lr()

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambda")}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
        (self.optimizer.lr,) = self._last_lr = self.get_lr()


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(step)."""

    def __init__(self, optimizer, lr_lambda: Callable[[int], float], last_epoch: int = -1):
        self.lr_lambda = lr_lambda
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return float(self.lr_lambda(step))


class ConstantLR(LRScheduler):
    """lr = base_lr * factor for the first total_iters steps, then base_lr."""

    def __init__(self, optimizer, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1):
        if not 0.0 <= factor <= 1.0:
            raise ValueError(f"ConstantLR: factor must be in [0, 1], got {factor}")
        self.const, self.total_iters = float(factor), int(total_iters)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return self.const if step < self.total_iters else 1.0


class LinearLR(LRScheduler):
    """The factor moves linearly from start_factor (step 0) to end_factor (step total_iters),
    then stays there."""

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor}")
        if not 0.0 <= end_factor <= 1.0:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor}")
        if total_iters < 1:
            raise ValueError(f"LinearLR: total_iters must be at least 1, got {total_iters}")
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        t = min(step, self.total_iters) / self.total_iters
        return self.start_factor + (self.end_factor - self.start_factor) * t


class SequentialLR(LRScheduler):
    """Runs `schedulers` one after another, switching at the steps in `milestones`; each
    one counts its own steps from 0 (its start)."""

    def __init__(self, optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int],
                 last_epoch: int = -1):
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: {len(schedulers)} schedulers need "
                             f"{len(schedulers) - 1} milestones, got {list(milestones)}")
        if list(milestones) != sorted(milestones) or any(m < 1 for m in milestones):
            raise ValueError(f"SequentialLR: milestones must be increasing and positive, got "
                             f"{list(milestones)}")
        for s in schedulers:
            if s.optimizer is not optimizer:
                raise ValueError("SequentialLR: every scheduler must drive the optimizer given")
        self.schedulers, self.milestones = list(schedulers), [int(m) for m in milestones]
        super().__init__(optimizer, last_epoch)

    def _which(self, step: int) -> tuple[LRScheduler, int]:
        start = 0
        for s, m in zip(self.schedulers, self.milestones):
            if step < m:
                return s, step - start
            start = m
        return self.schedulers[-1], step - start

    def get_lr(self) -> list[float]:
        s, local = self._which(self.last_epoch)
        return [base * s.factor(local) for base in s.base_lrs]

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["schedulers"] = [s.state_dict() for s in self.schedulers]
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        for s, sd in zip(self.schedulers, state.pop("schedulers")):
            s.__dict__.update(sd)
        super().load_state_dict(state)
