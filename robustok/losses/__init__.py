"""Training losses: perceptual, discriminator and GAN terms."""
