"""The tokenizer section (issue 4): a MAGVIT-2 LFQ tokenizer of two-view frames.

`tokenizer_config(variant)` for "debug", "tiny", "base" and "paper". A frame is both camera views
stacked vertically (third-view over wrist), [2 * image_size, image_size, 3].

Token grid and vocabulary (see the module docstring of roboscape_jax/tokenizer/model.py):
  debug  128x64 frame, 8x down -> 16x8 tokens, 6 bits (2 x 2^3); trains in seconds.
  tiny   128x64 frame, 8x down -> 16x8 tokens, 10 bits (one 1024-way code), LPIPS weight 1;
         the frame folded into 2x2 pixel blocks first (`model.stem_factor=2`, levels 32 / 64 /
         128 wide at 64x32 / 32x16 / 16x8: no full-resolution convolution; see below).
         An 18-bit (2 x 2^9) tiny tokenizer reconstructed better (PSNR 25.2 dB OOD) but its codes
         flipped between consecutive frames on 45% of tokens (bits near the sign boundary), used
         only 20% of its codes, and no world model here could predict the flips (README,
         Performance); fewer bits per token keep codes stable and predictable.
         L1 counts the pixels that moved since the episode's first frame 5 times
         (`loss.moving_weight` = 4: the arm and objects are what the world model must draw;
         +0.9 dB PSNR on them, README Performance). Batch 8 for 3200 steps: the same frames
         seen and about the same wall time as batch 32 for 800 steps (a step costs about its
         batch on these 2 cores: 2.29 steps/s at 8, 1.04 at 16, 0.57 at 32 on the slow
         2026-12-03 VM), but four times the updates: out-of-domain LPIPS 0.0986 -> 0.0841,
         PSNR 23.40 -> 24.10 dB; in-domain 0.0658 -> 0.0528, 23.48 -> 24.48 dB (batch 16 for
         1600 steps: between the two; docs/performance_history.md). Reference conditioning
         (`model.reference_conditioning`, optionally `reference_copy_gate`: encoder and decoder
         also read the episode's first frame) raised OOD PSNR by 0.6-0.7 dB but only on the
         static scene: PSNR on the pixels that moved fell 0.3-1.4 dB and LPIPS rose 12-14%
         (docs/performance_history.md), so it is off. RGB channel-order augmentation of half the
         training frames (`input.colour_permute_fraction=0.5`) cut out-of-domain LPIPS 7.6%
         (0.0986 -> 0.0911) but raised in-domain LPIPS 13% and lowered PSNR on both splits
         (2026-12-03, batch 32, README Performance); at batch 8 x 3200 a quarter of the frames
         gave out-of-domain LPIPS 0.0764 vs 0.0858 but PSNR 23.91 vs 24.14 dB and in-domain
         0.0581 vs 0.0518 (2026-12-06), so it is off too: the action model on its codes got
         9.9% of the changes right at or above copying (7.2% on the default's) but its 8-step
         rollouts stayed 4.4% worse than the tokenized copy out of domain (5.3%). The
         adversarial loss (`loss.adversarial_weight`, VQGAN's adaptive weight) at
         0.1 from step 800 changed nothing (out-of-domain LPIPS 0.0852; a fixed 0.1 wrecked
         training): off. The temporal-stability loss (`loss.temporal_weight` = 1: tokens whose 8x8
         patch did not move keep their previous code's signs) left reconstruction as it was
         (out-of-domain 0.0849 / 24.14 dB) and cut the tokens changing per step only 6-9%
         (29.6% of the patches really move per step: the wrist camera rides on the gripper);
         the action model on its codes was the same within noise (2026-12-06): off. 12 bits
         instead of 10 were
         no better at 800 steps of batch 32 (out-of-domain LPIPS 0.1016 vs 0.0986; same day).
         Nor were more training scenes: 16 in-domain scenes x 3 episodes per task instead of
         4 x 10 (`data.ind_scenes_per_split=16`, every colour of the out-of-domain objects on
         some training shape) gave out-of-domain LPIPS 0.0911 vs 0.0872 for the 4-scene
         tokenizer on the same episodes, 2400 steps each (docs/performance_history.md): the
         codes lack capacity, not colours, and the out-of-domain purple and pink objects still
         come back red and yellow. The pixel-unshuffle stem (`model.stem_factor=2`, channels 32 x
         (1, 2, 4), 1.64M parameters; before it: channels 16 x (1, 2, 4, 8), 1.66M, whose
         full-resolution 16-channel convolutions were the step's slowest) steps 1.57x faster:
         the 3200 steps in 19.7 min on a slow VM where the network without it took 23.6-26
         (issue 4's 20 minutes), at about its quality (out-of-domain LPIPS 0.0890 vs 0.0858,
         PSNR 23.97 vs 24.14 dB; the network without it cut to 2400 steps for 19 minutes:
         0.0889 / 23.85); the world models, env and policies were retrained on its codes
         (2026-12-07, docs/performance_history.md).
  base   as tiny with a wider, deeper network and 12 bits, for a GPU.
  paper  2^18 codes as 2 x 2^9 (RoboScape-R / 1X GENIE); 128x128 views, 16x down -> 16x8 tokens.
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("debug", "tiny", "base", "paper")


def _common() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = "tiny"
    c.seed = 0
    c.model = ml_collections.ConfigDict(dict(
        channels=16, channel_mults=(1, 2, 4, 8), num_res_blocks=1, num_bits=10, num_factors=1,
        # encode and decode given the episode's first frame (tokenizer/model.py)
        reference_conditioning=False, reference_copy_gate=False,
        # > 1: frames folded into stem_factor^2-pixel blocks before the encoder and unfolded
        # after the decoder (no full-resolution convolutions; tokenizer/model.py)
        stem_factor=1))
    c.loss = ml_collections.ConfigDict(dict(
        l1_weight=1.0, l2_weight=0.0, lpips_weight=1.0,
        entropy_weight=0.1, entropy_tau=0.01, entropy_gamma=1.0, entropy_num_factors=1,
        commitment_weight=0.25,
        # > 0: L1 counts pixels that moved since the episode's first frame (1 + w) times
        moving_weight=0.0,
        # > 0: the hinge GAN loss against a patch discriminator (tokenizer/adversarial.py),
        # counted from adversarial_start_step on, its gradient scaled to that share of the
        # reconstruction losses' (adversarial_adaptive; else a fixed weight); off (0) everywhere
        adversarial_weight=0.0, adversarial_start_step=0, adversarial_adaptive=True,
        # > 0: tokens whose 8x8 patch did not move since the previous frame keep their previous
        # code's signs by this hinge margin (losses.temporal_stability_loss); off (0) by default
        temporal_weight=0.0, temporal_margin=0.25))
    # The patch discriminator of the adversarial loss (read only when adversarial_weight > 0)
    c.discriminator = ml_collections.ConfigDict(dict(channels=32, num_layers=3, lr=1e-4, b1=0.5,
                                                     b2=0.9))
    c.optim = ml_collections.ConfigDict(dict(
        lr=1e-3, wd=1e-4, warmup_steps=100, grad_clip_norm=1.0, b1=0.9, b2=0.99))
    # colour_permute_fraction: that share of training frames gets its RGB channels reordered
    # (tokenizer/train.py `permute_colours`: codes for colours the training scenes lack)
    c.input = ml_collections.ConfigDict(dict(
        batch_size=32, frame_height=128, frame_width=64, num_views=2, held_out_fraction=0.1,
        colour_permute_fraction=0.0))
    # Token cache: a bit keeps its previous sign while |z| < hysteresis (fewer noise flips for the
    # world models; measured on the tiny tokenizer, README): 0 = plain sign codes. 0.3 and 0.45
    # lifted the action model's changed-token accuracy at equal overall accuracy (11.4% vs 7.2%
    # at or above copying, at 0.3) but made every decoded frame worse (tokenized copy's 8-step
    # LPIPS +4% / +6%; docs/performance_history.md), so 0.15 stays.
    # generated_margins: also store the train split's margins of each frame's decoded image,
    # which world models with `generated_margin_flag` train on (world_model.py).
    c.cache = ml_collections.ConfigDict(dict(hysteresis=0.15, generated_margins=False))
    c.ema_decay = 0.99
    c.num_steps = 600
    c.log_every_steps = 20
    c.checkpoint_every_steps = 100
    c.eval_every_steps = 200
    c.eval = ml_collections.ConfigDict(dict(num_frames=256, batch_size=64, grid_frames=8,
                                            lpips=True))  # LPIPS also when its loss weight is 0
    return c


def tokenizer_config(variant: str = "tiny") -> ml_collections.ConfigDict:
    """The tokenizer section for `variant` (one of VARIANTS)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown tokenizer variant {variant!r}; known: {VARIANTS}")
    c = _common()
    c.variant = variant
    if variant == "debug":
        c.model.update(channels=8, channel_mults=(1, 1, 2, 2), num_res_blocks=0, num_bits=6,
                       num_factors=2)
        c.loss.update(lpips_weight=0.0, entropy_num_factors=2)
        c.optim.warmup_steps = 1
        c.input.batch_size = 4
        c.num_steps = 2
        c.log_every_steps = 1
        c.checkpoint_every_steps = 2
        c.eval_every_steps = 2
        c.eval.update(num_frames=8, batch_size=8, grid_frames=4, lpips=False)
    elif variant == "tiny":
        # the pixel-unshuffle stem: 2x2 pixel blocks in, levels 32 / 64 / 128 wide at 64x32 /
        # 32x16 / 16x8 (8x down as before), no full-resolution convolution
        c.model.update(channels=32, channel_mults=(1, 2, 4), stem_factor=2)
        c.loss.moving_weight = 4.0
        c.input.batch_size = 8
        c.num_steps = 3200
        c.checkpoint_every_steps = 400
        c.eval_every_steps = 800
    elif variant == "base":
        c.model.update(channels=64, channel_mults=(1, 2, 2, 4), num_res_blocks=2, num_bits=12)
        c.input.batch_size = 64
        c.optim.lr = 3e-4
        c.ema_decay = 0.999
        c.num_steps = 100_000
        c.checkpoint_every_steps = 2000
        c.eval_every_steps = 2000
        c.eval.num_frames = 2048
    elif variant == "paper":
        c.model.update(channels=128, channel_mults=(1, 1, 2, 2, 4), num_res_blocks=2,
                       num_bits=18, num_factors=2)
        c.loss.entropy_num_factors = 2
        c.input.update(batch_size=64, frame_height=256, frame_width=128)
        c.optim.lr = 1e-4
        c.ema_decay = 0.999
        c.num_steps = 300_000
        c.checkpoint_every_steps = 5000
        c.eval_every_steps = 5000
        c.eval.num_frames = 2048
    return c
