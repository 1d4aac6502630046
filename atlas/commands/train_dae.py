"""`atlas train-dae`: train a PPGN-h code DAE on the codes of a folder of real images."""

from __future__ import annotations

import argparse

from atlas.commands.code_input import add_code_input_arguments
from atlas.commands.options import int_in, positive_number, seed_number

HELP = "Train a residual-MLP denoising autoencoder on real codes (the PPGN-h prior: models.dae)."
EXAMPLES = """example:
  atlas train-dae --config configs/alexnet-deepsim.yaml --images ~/imagenet-val --out weights/dae.pt
  # then in the config:  models: {dae: {spec: dae:residual_mlp, weights: weights/dae.pt}}
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_code_input_arguments(
        p, "output state-dict file (models.dae: {spec: dae:residual_mlp, weights: FILE})"
    )
    p.add_argument(
        "--epochs",
        type=int_in(1, 100_000, "passes over the codes"),
        default=20,
        metavar="N",
        help="passes over the codes",
    )
    p.add_argument(
        "--hidden", type=int_in(1, 65536, "hidden units"), default=1024, metavar="N",
        help="hidden units of each residual block",
    )  # fmt: skip
    p.add_argument(
        "--noise",
        type=positive_number(100.0, "code standard deviations"),
        default=0.5,
        help="training noise, in code standard deviations",
    )
    p.add_argument("--seed", type=seed_number, default=0, help="seed of the noise, batches and weights")


def run(args: argparse.Namespace) -> int:
    import math

    import torch

    from atlas.atomic import atomic_write
    from atlas.commands.code_input import command_codes
    from atlas.errors import AtlasError
    from atlas.models.dae import train_dae

    out, codes, (network, code_layer) = command_codes(
        args, 10, "a DAE needs at least 10 (thousands for a useful prior)"
    )
    layer = f"{network}'s {code_layer}"
    dae, report = train_dae(codes, hidden=args.hidden, epochs=args.epochs, noise=args.noise, seed=args.seed)
    finite = all(torch.isfinite(t).all() for t in dae.state_dict().values())
    if not finite or not math.isfinite(report["heldout_error"]):
        raise AtlasError(
            f"the DAE's training diverged (held-out error {report['heldout_error']}); {args.out} left as it "
            "was: lower --noise or check the codes (atlas code-stats)"
        )
    atomic_write(out, lambda tmp: torch.save(dae.state_dict(), tmp))
    heldout, identity = report["heldout_error"], report["identity_error"]
    gain = 1.0 - heldout / identity if identity > 0 else 0.0
    verdict = (  # a gain below 0.1 % prints as the same number: no better
        f"{gain:.1%} below the identity's" if gain >= 0.001 else "NOT better than the identity"
    )
    print(
        f"wrote {args.out}: DAE on {report['codes']} {layer} codes (dim {report['dim']}); held-out error "
        f"{heldout:.4f} vs identity {identity:.4f} ({verdict}); set models.dae: "
        f'{{spec: "dae:residual_mlp", weights: {args.out}}}'
    )
    return 0
