"""Hybridbox: the only code in syncd that speaks HTTP to Hybridbox.

- :mod:`syncd.hybridbox._client`: :class:`HybridboxClient`, the requests and their retries.
- :mod:`syncd.hybridbox._retry`: :class:`RetryBudget`, the seconds one cycle may spend waiting.
- :mod:`syncd.hybridbox._flow`: :class:`FlowControl`, how many bulk requests may be outstanding
  and how fast requests may go, learned from what Hybridbox answers.
- :mod:`syncd.hybridbox._wire`: one answer off the wire, bounded as a whole in time
  (``hybridbox.timeout_s``) and in size (:data:`MAX_ANSWER_BYTES` decoded).
- :mod:`syncd.hybridbox._records`: the records answers are read into, and what an answer meant.
- :mod:`syncd.hybridbox._answers`: reading an answer that came back (bulk results, error bodies,
  ``Retry-After``, batch limits).

It knows the API, not the state: what to send, and what to record of an answer, is
:mod:`syncd.cycle`'s business.
"""

from syncd.hybridbox._answers import EXCERPT_CHARS, error_info
from syncd.hybridbox._client import BACKOFF_BASE_S, BACKOFF_MAX_S, HybridboxClient, SentBulk
from syncd.hybridbox._flow import FlowControl
from syncd.hybridbox._records import (
    BatchRejected,
    BatchTooLarge,
    BulkResult,
    ItemCreated,
    ItemFailed,
    ItemKind,
    Mailbox,
    NewMailbox,
    OutcomeUnknown,
    RequestRefused,
    UnexpectedResponse,
    classify_code,
)
from syncd.hybridbox._retry import RetryBudget
from syncd.hybridbox._wire import MAX_ANSWER_BYTES

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_MAX_S",
    "EXCERPT_CHARS",
    "MAX_ANSWER_BYTES",
    "BatchRejected",
    "BatchTooLarge",
    "BulkResult",
    "FlowControl",
    "HybridboxClient",
    "ItemCreated",
    "ItemFailed",
    "ItemKind",
    "Mailbox",
    "NewMailbox",
    "OutcomeUnknown",
    "RequestRefused",
    "RetryBudget",
    "SentBulk",
    "UnexpectedResponse",
    "classify_code",
    "error_info",
]
