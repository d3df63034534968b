"""An estimate whose batch changes shape on the way, for tests that compare two paths of the loop."""

from grokscope import build_config, train
from grokscope.llc import estimate_llc

SMALL = {"p": 11, "train_frac": 0.7, "embed_dim": 4, "hidden_size": 8, "n_steps": 200, "n_checkpoints": 2, "batch_size": 16}


def small_run(directory, **overrides):
    """A 200-step `example` run with two checkpoints, trained in about a second."""
    return train(build_config("example", overrides={**SMALL, **overrides}), directory, progress=False)


def estimate_with_a_leaver(run, settings: dict):
    """Every checkpoint of ``run``, and the last again at 100 times the step size: that set leaves
    the batch after its first block (MALA rejects it) while the others go on."""
    data = run.dataset()
    params = [run.state_dict(s) for s in run.steps]
    epsilons = [settings["epsilon"]] * len(params) + [100 * settings["epsilon"]]
    return estimate_llc(run.new_model(), (data.train_x, data.train_y), params + params[-1:],
                        checkpoint_ids=run.steps + run.steps[-1:], per_set=[{"epsilon": e} for e in epsilons], **settings)
