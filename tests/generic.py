"""A model behind a forward of its own, so the sampler takes the generic path (torch.func.vmap over
functional_call) whatever the model inside would get; parameter names gain the prefix ``inner.``."""

from torch import nn


class Generic(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)
