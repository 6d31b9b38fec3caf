"""Inference-only forward pass of GLER-BiGRUnet with the same weights, restructured for throughput.

``GLERBiGRUnet.forward`` (models.py) is the specification and the training path; this module computes the
same function for the cyclic predictor, where every pixel runs 60-72 forward passes and the stock modules'
per-op overheads dominate (docs/forecast.md, "Prediction throughput": the flash-attention kernel on 8 heads
of width 2, ``nn.GRU``'s gate ops on strided chunks, the per-step output copies and concatenations). What
changes, nothing of which alters the function beyond float32 rounding:

* the four GLFE blocks run as one (B, L, 4, d) Dense and one grouped Conv1d (groups = 4);
* MHCA's scaled dot-product attention is written out (matmul, softmax, matmul) on (B, heads, L, L);
* the two 3-layer BiGRUs (line 1 on the MCAR output, line 2 on the EFs) run side by side: per layer the four
  recurrences (line 1 forward/backward, line 2 forward/backward) share one batched matmul per time step, the
  input projections of all time steps are one matmul per line and layer, time-major so each step's slice is
  contiguous;
* the four one-step heads are one (L * d, 4) matmul.

The forward direction's state cannot be carried from one cyclic step to the next: the network starts every
window from a zero state at the window's first step, so a shifted window changes every state.
"""

from __future__ import annotations

import torch
from torch import nn

from insarcloud.forecast.models import GLERBiGRUnet


class FastGLER(nn.Module):
    """Eval-mode GLER-BiGRUnet forward for inference: (batch, L, 4) float32 -> (batch, 4).

    Built from a (trained) :class:`GLERBiGRUnet`; it copies its weights, so later changes to ``model`` are not
    seen. Dropout is the identity (inference).
    """

    outputs = (0, 1, 2, 3)

    def __init__(self, model: GLERBiGRUnet) -> None:
        super().__init__()
        if not isinstance(model, GLERBiGRUnet):
            raise TypeError(f"FastGLER needs a GLERBiGRUnet, got {type(model).__name__}")
        p = {k: v.detach().clone() for k, v in model.state_dict().items()}
        d = model.td_dense1.in_features
        self.d, self.heads = d, model.mhca.num_heads
        self.layers = model.bigru1.num_layers
        g = range(4)
        # GLFE: Dense(1 -> d) per variable as (4, d) scale and bias; Conv1d(d, d, 3) per variable as one
        # grouped convolution over (B, 4 d, L)
        self.register_buffer("glfe_w", torch.stack([p[f"glfe.{i}.dense.weight"][:, 0] for i in g]))
        self.register_buffer("glfe_b", torch.stack([p[f"glfe.{i}.dense.bias"] for i in g]))
        conv = torch.stack([p[f"glfe.{i}.conv.weight"] for i in g])  # (4 variables, d out, d in, 3 taps)
        self.register_buffer("conv_w", conv.permute(3, 0, 1, 2).contiguous())  # (tap, variable, out, in)
        self.register_buffer("conv_b", torch.stack([p[f"glfe.{i}.conv.bias"] for i in g]))
        # MHCA: nn.MultiheadAttention with kdim = vdim = 3 d keeps separate projection weights
        self.register_buffer("q_w", p["mhca.q_proj_weight"])
        self.register_buffer("k_w", p["mhca.k_proj_weight"])
        self.register_buffer("v_w", p["mhca.v_proj_weight"])
        b = p["mhca.in_proj_bias"]
        self.register_buffer("q_b", b[:d].clone())
        self.register_buffer("k_b", b[d : 2 * d].clone())
        self.register_buffer("v_b", b[2 * d :].clone())
        self.register_buffer("o_w", p["mhca.out_proj.weight"])
        self.register_buffer("o_b", p["mhca.out_proj.bias"])
        self.register_buffer("td_w", p["td_dense1.weight"])
        self.register_buffer("td_b", p["td_dense1.bias"])
        # GRUs, per layer: input weights of line 1 / line 2 as (in, 2 * 3 d) [forward | backward] and the
        # recurrent weights of the four recurrences (line 1 fwd, line 1 bwd, line 2 fwd, line 2 bwd)
        # GRUs, per layer, the four recurrences (line 1 forward, backward, line 2 forward, backward): input
        # weights (3 d, in) and biases, recurrent weights and biases split into the r, z rows and the n rows
        names = [(n, s) for n in ("bigru1", "bigru2") for s in ("", "_reverse")]
        for layer in range(self.layers):
            for r, (n, s) in enumerate(names):
                self.register_buffer(f"wi_{layer}_{r}", p[f"{n}.weight_ih_l{layer}{s}"])
            def rec(key: str) -> torch.Tensor:
                return torch.stack([p[f"{n}.{key}_l{layer}{s}"] for n, s in names])  # noqa: B023

            bh, wh = rec("bias_hh"), rec("weight_hh")
            # the r and z parts of b_hh are added to the input projection (outside the time loop)
            bi = rec("bias_ih") + torch.cat([bh[:, : 2 * d], torch.zeros_like(bh[:, 2 * d :])], dim=1)
            self.register_buffer(f"bi_{layer}", bi[:, :, None])
            self.register_buffer(f"whrz_{layer}", wh[:, : 2 * d].contiguous())
            self.register_buffer(f"whn_{layer}", wh[:, 2 * d :].contiguous())
            self.register_buffer(f"bhn_{layer}", bh[:, 2 * d :, None].contiguous())
        self.register_buffer("sa_w", torch.cat([p["sa.q.weight"], p["sa.k.weight"], p["sa.v.weight"]]).t().contiguous())
        self.sa_scale = model.sa.scale
        self.register_buffer("raise_w", p["raise_dense.weight"].t().contiguous())
        self.register_buffer("raise_b", p["raise_dense.bias"])
        self.register_buffer("head_w", torch.cat([p[f"heads.{i}.weight"] for i in g]).t().contiguous())
        self.register_buffer("head_b", torch.cat([p[f"heads.{i}.bias"] for i in g]))

    def _glfe(self, x: torch.Tensor) -> torch.Tensor:
        """(L, 4, B) -> (L, 4, d, B) GLFE features (tanh for SD and LST, ReLU for NDVI and precipitation)."""
        h = torch.addcmul(self.glfe_b[:, :, None], x[:, :, None], self.glfe_w[:, :, None])  # (L, 4, d, B)
        h[:, :2].tanh_()
        h[:, 2:].relu_()
        # Conv1d (k=3, zero 'same' padding): out[l] = W_0 in[l - 1] + W_1 in[l] + W_2 in[l + 1] + b
        c = torch.matmul(self.conv_w[1], h).add_(self.conv_b[:, :, None])
        c[1:] += torch.matmul(self.conv_w[0], h[:-1])
        c[:-1] += torch.matmul(self.conv_w[2], h[1:])
        c[:, :2].tanh_()
        c[:, 2:].relu_()
        return c

    def _mhca(self, sd: torch.Tensor, efs: torch.Tensor) -> torch.Tensor:
        """Multi-head cross attention, query SD (L, d, B), key = value = EFs (L, 3 d, B) -> (L, d, B)."""
        L, d, bsz = sd.shape
        h, hd = self.heads, d // self.heads
        q = (torch.matmul(self.q_w, sd).add_(self.q_b[:, None]).mul_(hd**-0.5)).view(L, h, hd, bsz)
        k = torch.matmul(self.k_w, efs).add_(self.k_b[:, None]).view(L, h, hd, bsz)
        v = torch.matmul(self.v_w, efs).add_(self.v_b[:, None]).view(L, h, hd, bsz)
        s = q[:, None, :, 0] * k[None, :, :, 0]  # (L query, L key, h, B)
        for c in range(1, hd):
            s.addcmul_(q[:, None, :, c], k[None, :, :, c])
        w = torch.softmax(s, dim=1)
        o = torch.stack([(w * v[None, :, :, c]).sum(1) for c in range(hd)], dim=2).view(L, d, bsz)
        return torch.matmul(self.o_w, o).add_(self.o_b[:, None])

    def _bigrus(self, in1: torch.Tensor, in2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both 3-layer BiGRUs on inputs (L, d, B) and (L, 3 d, B) -> (L, 2 d, B) each."""
        L, d, bsz = in1.shape
        # inputs of the four recurrences in their processing order: the backward ones read time reversed
        xs = [in1, in1.flip(0), in2, in2.flip(0)]
        for layer in range(self.layers):
            bi = getattr(self, f"bi_{layer}")
            gi = torch.empty((4, L, 3 * d, bsz), dtype=in1.dtype, device=in1.device)
            for r in range(4):  # input projections of all time steps, one matmul per recurrence
                torch.matmul(getattr(self, f"wi_{layer}_{r}"), xs[r], out=gi[r]).add_(bi[r])
            whrz, whn = getattr(self, f"whrz_{layer}"), getattr(self, f"whn_{layer}")
            bhn = getattr(self, f"bhn_{layer}")
            girz, gin = gi[:, :, : 2 * d], gi[:, :, 2 * d :]
            out = torch.empty((L, 4, d, bsz), dtype=in1.dtype, device=in1.device)
            h = torch.zeros((4, d, bsz), dtype=in1.dtype, device=in1.device)
            for t in range(L):
                # r, z = sigmoid(W_i x + b_i + W_h h + b_h): b_hr, b_hz were added to the input projection
                rz = torch.baddbmm(girz[:, t], whrz, h).sigmoid_()
                # n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
                n = torch.addcmul(gin[:, t], rz[:, :d], torch.baddbmm(bhn, whn, h)).tanh_()
                h = torch.lerp(n, h, rz[:, d:], out=out[t])  # (1 - z) n + z h = n + z (h - n)
            rev = out.flip(0)  # out in real time order for the backward recurrences
            xs = [torch.cat([out[:, 0], rev[:, 1]], dim=1), torch.cat([rev[:, 0], out[:, 1]], dim=1),
                  torch.cat([out[:, 2], rev[:, 3]], dim=1), torch.cat([rev[:, 2], out[:, 3]], dim=1)]
        return xs[0], xs[2]

    def forward_tm(self, x: torch.Tensor) -> torch.Tensor:
        """Forward on a time-major, batch-last window (L, 4, B) -> (4, B)."""
        L, _, bsz = x.shape
        d = self.d
        g = self._glfe(x)
        sd, efs = g[:, 0], g[:, 1:].reshape(L, 3 * d, bsz)
        awfm = self._mhca(sd, efs)
        in1 = torch.matmul(self.td_w, awfm).add_(self.td_b[:, None])
        line1, line2 = self._bigrus(in1, efs)
        input_sa = torch.cat([line1, line2], dim=1).add_(g.view(L, 4 * d, bsz))  # (L, 4 d, B)
        # the self-attention and the head contract over features: batch-major (B, L, 4 d) from here
        xs = input_sa.permute(2, 0, 1).contiguous()
        q, k, v = torch.matmul(xs, self.sa_w).split(4 * d, dim=-1)
        # softmax over the last axis of length L written out: torch.softmax on rows of ~15 is ~7x slower
        e = torch.bmm(q, k.transpose(1, 2))
        e = e.sub_(e.amax(-1, keepdim=True)).mul_(self.sa_scale).exp_()
        sa = torch.bmm(e.div_(e.sum(-1, keepdim=True)), v)
        rsam = torch.cat([xs, sa], dim=-1)
        h = torch.tanh_(torch.addmm(self.raise_b, rsam.view(-1, 8 * d), self.raise_w)).view(bsz, L * d)
        return torch.addmm(self.head_b, h, self.head_w).t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, 4) -> (B, 4), as ``GLERBiGRUnet.forward`` in eval mode."""
        return self.forward_tm(x.permute(1, 2, 0).contiguous()).t()


def fast_model(model: nn.Module) -> nn.Module:
    """The inference twin of ``model`` when one exists (GLER-BiGRUnet), else ``model`` itself."""
    if isinstance(model, GLERBiGRUnet):
        dev = next(model.parameters()).device
        return FastGLER(model).to(dev)
    return model
