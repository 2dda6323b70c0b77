"""archiver.crypto."""
