"""Subnet evaluation: BN recalibration, then the task metric on validation batches (`SubnetEvaluator`)."""
