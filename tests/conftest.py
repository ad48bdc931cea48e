"""Shared pytest set-up: --run_slow, markers, quiet TF logs, and 2 logical CPUs for MirroredStrategy tests."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption("--run_slow", action="store_true", help="also run tests marked @pytest.mark.slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: >10 s (full-size models, subprocess binaries); run with --run_slow")
    config.addinivalue_line("markers", "gpu: needs a GPU; skipped when none is visible")
    # Split the host CPU into 2 logical devices before TensorFlow initializes them, so that
    # MirroredStrategy tests have two replicas on any machine.
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--run_slow")
    gpu = None
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: needs --run_slow"))
        if "gpu" in item.keywords:
            if gpu is None:
                import tensorflow as tf

                gpu = bool(tf.config.list_physical_devices("GPU"))
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="needs a GPU"))
