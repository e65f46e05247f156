"""Real servers for the source tests: S3 (moto), GCS's JSON API (emulator), SFTP (asyncssh), and a fault proxy."""
