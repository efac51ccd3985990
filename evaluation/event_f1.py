"""Event F1: how well captions name the sound events of their clips (the demo's measure on its synthetic corpus).

A caption names an event when it holds one of the event's words (`data.synthetic_corpus.events_in_caption`).
"""

from ..data.synthetic_corpus.catalogue import events_in_caption
from .metrics import precision_recall_f1


def event_f1(predictions: list[str], clips_events: list[set[str]]) -> dict[str, float]:
    """Micro-averaged precision, recall and F1 of the events named by predicted captions against the true events.

    Counts are summed over clips: a true positive is an event of the clip that its caption names, a false positive
    an event the caption names that is not in the clip, a false negative a clip event the caption misses.
    """
    if len(predictions) != len(clips_events):
        raise ValueError(
            f"got {len(predictions)} predictions for {len(clips_events)} clips; pass one caption per clip"
        )
    true_pos = false_pos = false_neg = 0
    for caption, truth in zip(predictions, clips_events):
        predicted, truth = events_in_caption(caption), set(truth)
        true_pos += len(predicted & truth)
        false_pos += len(predicted - truth)
        false_neg += len(truth - predicted)
    return precision_recall_f1(true_pos, false_pos, false_neg)
