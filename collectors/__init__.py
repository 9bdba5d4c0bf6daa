"""Sources of CloudTrail records (files, the demo generator, the AWS API) and the
background collector that feeds them to the metrics engine."""
