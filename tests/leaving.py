"""An estimate whose batch changes shape on the way, for tests that compare two paths of the loop."""

from grokscope import train
from grokscope.llc import estimate_llc

from tiny import tiny_config


def small_run(directory, **overrides):
    """The tiny run trained longer (200 steps, two checkpoints), in about a second."""
    config = tiny_config(**{"train_frac": 0.7, "n_steps": 200, "n_checkpoints": 2, **overrides})
    return train(config, directory, progress=False)


def estimate_with_a_leaver(run, settings: dict):
    """Every checkpoint of ``run``, and the last again at 100 times the step size: that set leaves
    the batch after its first block (MALA rejects it) while the others go on."""
    data = run.dataset()
    params = [run.state_dict(s) for s in run.steps]
    epsilons = [settings["epsilon"]] * len(params) + [100 * settings["epsilon"]]
    return estimate_llc(run.new_model(), (data.train_x, data.train_y), params + params[-1:],
                        checkpoint_ids=run.steps + run.steps[-1:], per_set=[{"epsilon": e} for e in epsilons], **settings)
