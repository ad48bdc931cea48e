"""Search-space families, one folder each; importing this package registers them (`registry`)."""

from scalenas_tf.families.scalenas import family as _scalenas  # noqa: F401
from scalenas_tf.families.scalenet import family as _scalenet  # noqa: F401
from scalenas_tf.families.scarlet import family as _scarlet  # noqa: F401
