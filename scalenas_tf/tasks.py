"""Task heads of the ScaleNAS networks: names and the fixed widths both the models and the counter use."""

TASKS = ("cls", "seg", "pose")

# HRNet classification head (timm's hrnet_w*): a Bottleneck per branch to 4 * these channels, stride-2
# 3x3 convs chaining them, then a 1x1 conv to CLS_NUM_FEATURES before pooling and the classifier.
CLS_HEAD_CHANNELS = (32, 64, 128, 256)
CLS_NUM_FEATURES = 2048
BOTTLENECK_EXPANSION = 4


def validate_task(task: str, num_classes: int) -> None:
    """Raises ValueError naming the bad argument."""
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}. Received: task={task!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")


def head_reads_all_branches(task: str) -> bool:
    """Top-down pose reads only branch 0 of the last module; the other heads read every branch."""
    return task != "pose"


# Segmentation label of pixels that do not count (HRNet/Cityscapes convention).
IGNORE_LABEL = 255
