"""``hostwright bench``: intake, deploy and the SSH floor, each measured against its floors."""
