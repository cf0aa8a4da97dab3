"""Metrics of the paper: sliced Wasserstein distance (section 5) and MS-SSIM."""
