"""archiver.web."""
