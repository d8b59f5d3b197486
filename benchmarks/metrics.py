"""Image-quality metrics used by every benchmark: those of ``l3ic.metrics`` (PSNR, MS-SSIM as
``tf.image.ssim_multiscale``), which ``export.to_onnx`` uses too."""
from l3ic.metrics import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_db, psnr  # noqa: F401
