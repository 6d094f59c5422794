"""ManiSkill3 data collection and the TFDS/RLDS dataset builder (needs the simulator stack)."""
