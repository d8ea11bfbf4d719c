"""The one exception of the law layer."""

from zhichao.errors import ZhichaoError


class RuleError(ZhichaoError):
    """A rule table is wrong, or an input cannot be graded under the tables in force.

    The message names the file, key or input, the value received and what is allowed, so
    the command line can print it as one line without a traceback.
    """
