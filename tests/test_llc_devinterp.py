"""Cross-check against devinterp 1.3.2 (the field's LLC library) on the same checkpoint and settings."""

import math
import warnings

import numpy as np
import pytest
import torch

from grokscope import build_config, train
from grokscope.llc import estimate_llc

devinterp = pytest.importorskip("devinterp", reason="install the 'bench' extra (make test does)")

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sampler", ["sgld", "rmsprop_sgld"])
def test_same_llc_as_devinterp(tmp_path, sampler):
    from devinterp.optim.sgld import SGLD
    from devinterp.optim.sgmcmc import SGMCMC
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from torch.utils.data import DataLoader, TensorDataset

    sets = {"p": 23, "train_frac": 0.8, "n_steps": 600, "n_checkpoints": 2, "embed_dim": 8, "hidden_size": 24}
    run = train(build_config("example", overrides=sets), tmp_path / "run", progress=False)
    data = run.dataset()
    model = run.model(run.steps[-1])
    n = data.n_train
    nbeta, gamma, steps, burn_in, m, chains = n / math.log(n), 5.0, 1000, 250, 64, 4
    # RMSprop's preconditioner G = 1/(√V + 0.1) is up to 10, so its ε is 10x smaller for a similar move
    epsilon = 1e-3 if sampler == "sgld" else 1e-4

    ours = estimate_llc(
        model, (data.train_x, data.train_y), epsilon=epsilon, gamma=gamma, n_steps=steps, burn_in=burn_in,
        batch_size=m, chains=chains, nbeta=nbeta, sampler=sampler,
    ).entries[0]

    loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=m, shuffle=True)

    def evaluate(net, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(net(x), y)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = estimate_learning_coeff_with_summary(
            model, loader, evaluate=evaluate, sampling_method=SGLD if sampler == "sgld" else SGMCMC.rmsprop_sgld,
            optimizer_kwargs=dict(lr=epsilon, localization=gamma, nbeta=nbeta) | ({} if sampler == "sgld" else dict(alpha=0.99, eps=0.1)),
            num_chains=chains, num_draws=steps - burn_in, num_burnin_steps=burn_in,
            init_loss=torch.tensor(ours.init_loss, dtype=torch.float32), seed=0, verbose=False,
        )
    their_chains = np.array([theirs[f"llc-chain/{i}"] for i in range(chains)])
    their_mean, their_sem = their_chains.mean(), their_chains.std(ddof=1) / math.sqrt(chains)
    combined = math.hypot(ours.llc_sem, their_sem)
    gap = abs(ours.llc_mean - their_mean)
    print(f"{sampler}: grokscope {ours.llc_mean:.3f} ± {ours.llc_sem:.3f}, devinterp {their_mean:.3f} ± {their_sem:.3f}")
    assert gap <= 0.05 * abs(their_mean) or gap <= combined, (ours.llc_mean, their_mean, combined)
