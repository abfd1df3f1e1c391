"""Configuration sync: the wizards that change agents and skill groups here and in the ICM,
and Verify and Sync, which repairs what a failover left out of sync."""
