"""Post-training (stage 2 of the paper): paired data from the generator, then decoder-only fine-tuning."""
