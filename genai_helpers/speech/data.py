"""Speech data made offline: espeak-ng reads sentences of a small domain aloud (chapter 16).

A text-to-speech system needs (text, waveform) pairs. Recording people is out of reach here, so the
book lets the formant synthesiser espeak-ng (a Debian package, ``apt install espeak-ng``) speak
sentences in several voices and at several speeds. The domain is a travel and weather assistant:
about seventy words in six sentence templates ("the train to oslo leaves from platform four at nine
fifteen"), so that a model trained for minutes on two CPU cores can learn it, and a recogniser
trained in the book can check what was said.

    from genai_helpers.speech import data
    utts = data.make_split("train", 600, seed=0)   # list[Utterance]: text, voice, speed, wave (16 kHz)

Splits are disjoint by sentence: ``"test"`` and ``"dev"`` sentences never occur in ``"train"``
(they are drawn from the same templates, so they are new combinations of known words).
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_RATE", "VOICES", "SPEEDS", "WORDS", "Utterance", "espeak_available", "speak",
           "random_sentence", "sentences", "make_split", "CACHE_DIR", "slot_mask", "resample_slots"]

SAMPLE_RATE = 16_000
#: Four espeak-ng voices, each a language plus a variant; two American, two British, male and female.
VOICES = ("en-us", "en-us+f3", "en-gb-x-rp", "en-gb-scotland+f2")
#: Speaking rates in words per minute (espeak-ng ``-s``).
SPEEDS = (140, 175, 210)
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genai_helpers" / "speech"

_CITIES = ("paris", "london", "berlin", "madrid", "rome", "oslo", "vienna", "dublin", "lisbon", "prague")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEATHER = ("sunny", "cloudy", "rainy", "windy", "snowy", "foggy")
_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
            "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
_HOURS = _NUMBERS[:12]
_MINUTES = ("five", "ten", "fifteen", "twenty", "thirty", "forty", "fifty")
_TEMPLATES = (
    "the train to {city} leaves from platform {n} at {hour} {minute}",
    "tomorrow in {city} it will be {weather} with a high of {n} degrees",
    "on {day} the weather in {city} will be {weather}",
    "your flight to {city} is delayed by {minute} minutes",
    "it is {hour} {minute} in {city}",
    "set an alarm for {hour} {minute} on {day}",
)
#: Every word a sentence of the domain can contain, sorted.
WORDS = tuple(sorted({w for t in _TEMPLATES for w in t.split() if not w.startswith("{")}
                     | set(_CITIES) | set(_DAYS) | set(_WEATHER) | set(_NUMBERS) | set(_MINUTES)))


@dataclass(frozen=True)
class Utterance:
    """One (text, waveform) pair: ``wave`` is float32 in [-1, 1] at ``SAMPLE_RATE``."""
    text: str
    voice: str
    speed: int
    wave: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.wave) / SAMPLE_RATE


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _check_voice_speed(voice, speed) -> None:
    if not isinstance(voice, str):
        raise TypeError(f"voice must be a str, one of {VOICES}, got {type(voice).__name__}")
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {VOICES}, got {voice!r}")
    if not isinstance(speed, int) or isinstance(speed, bool):
        raise TypeError(f"speed must be an int (words per minute), got {type(speed).__name__}")
    if not 80 <= speed <= 450:
        raise ValueError(f"speed must be in [80, 450] words per minute, got {speed}")


def speak(text: str, voice: str = "en-us", speed: int = 175) -> np.ndarray:
    """``text`` spoken by espeak-ng: a float32 waveform at ``SAMPLE_RATE`` (16 kHz).

    espeak-ng writes 22,050 Hz 16-bit mono WAV; it is resampled with a polyphase filter
    (``scipy.signal.resample_poly``, ratio 320/441) and trimmed of leading and trailing silence.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip() or len(text) > 500:
        raise ValueError(f"text must be non-empty and at most 500 characters, got {len(text)}")
    _check_voice_speed(voice, speed)
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed: `sudo apt-get install espeak-ng` (Debian/Ubuntu), "
                           "`brew install espeak-ng` (macOS), or `bash tools/system_deps.sh`")
    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True, timeout=30).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    from scipy.signal import resample_poly
    g = np.gcd(SAMPLE_RATE, rate)
    x = resample_poly(pcm, SAMPLE_RATE // g, rate // g).astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    if len(loud):
        pad = SAMPLE_RATE // 50                       # keep 20 ms either side
        x = x[max(0, loud[0] - pad): loud[-1] + pad]
    return np.clip(x, -1.0, 1.0)


def random_sentence(rng: random.Random) -> str:
    """One sentence of the domain, drawn with ``rng``."""
    t = rng.choice(_TEMPLATES)
    return t.format(city=rng.choice(_CITIES), n=rng.choice(_NUMBERS), hour=rng.choice(_HOURS),
                    minute=rng.choice(_MINUTES), weather=rng.choice(_WEATHER), day=rng.choice(_DAYS))


_SLOTS = {"city": _CITIES, "n": _NUMBERS, "hour": _HOURS, "minute": _MINUTES, "weather": _WEATHER, "day": _DAYS}


def _parse(sentence: str):
    """The template and the slot names of ``sentence`` (one entry per word: slot name or None)."""
    words = sentence.split()
    for t in _TEMPLATES:
        parts = t.split()
        if len(parts) != len(words):
            continue
        slots = [p[1:-1] if p.startswith("{") else None for p in parts]
        if all((w in _SLOTS[s]) if s else (w == p) for w, p, s in zip(words, parts, slots)):
            return t, slots
    raise ValueError(f"sentence is not a sentence of the domain: {sentence!r}")


def slot_mask(sentence: str) -> list[bool]:
    """For each word of ``sentence``: True when it fills a slot (city, number, day, weather ...),
    False when it is a fixed word of its template."""
    return [s is not None for s in _parse(sentence)[1]]


def resample_slots(sentence: str, rng: random.Random) -> str:
    """The same template with every slot refilled at random: what a speaker who gets the template
    right and guesses the content would say (chapter 16's chance level)."""
    _, slots = _parse(sentence)
    return " ".join(rng.choice(_SLOTS[s]) if s else w for w, s in zip(sentence.split(), slots))


def _split_of(sentence: str) -> str:
    """train / dev / test by a hash of the sentence, so a sentence lives in exactly one split."""
    h = int(hashlib.sha256(sentence.encode()).hexdigest()[:8], 16) % 10
    return "test" if h == 0 else "dev" if h == 1 else "train"


def sentences(split: str, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences of ``split`` ("train", "dev" or "test"), drawn with ``seed``."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"split must be 'train', 'dev' or 'test', got {split!r}")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 20_000:
        raise ValueError(f"n must be an int in [1, 20000], got {n!r}")
    rng = random.Random(f"{split}-{seed}")
    seen, out = set(), []
    for _ in range(200 * n):
        s = random_sentence(rng)
        if s not in seen and _split_of(s) == split:
            seen.add(s)
            out.append(s)
            if len(out) == n:
                return out
    raise ValueError(f"could not draw {n} distinct {split} sentences; ask for fewer")


def make_split(split: str, n: int, seed: int = 0, *, voices=VOICES, speeds=SPEEDS,
               cache: bool = True) -> list[Utterance]:
    """``n`` utterances of ``split``: distinct sentences, each in a random voice and speed.

    Cached as one ``.npz`` under ``CACHE_DIR`` (keyed by the arguments), since espeak-ng takes
    about 20 ms per sentence.
    """
    for v in voices:
        _check_voice_speed(v, speeds[0] if speeds else 175)
    for s in speeds:
        _check_voice_speed(voices[0] if voices else "en-us", s)
    texts = sentences(split, n, seed)
    rng = random.Random(f"voice-{split}-{seed}")
    plan = [(t, rng.choice(tuple(voices)), rng.choice(tuple(speeds))) for t in texts]
    key = hashlib.sha256(repr((plan, SAMPLE_RATE, "v1")).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"{split}-{n}-{seed}-{key}.npz"
    if cache and path.is_file():
        z = np.load(path)
        lengths = z["lengths"]
        waves = np.split(z["audio"], np.cumsum(lengths)[:-1])
        return [Utterance(t, v, s, w) for (t, v, s), w in zip(plan, waves)]
    waves = [speak(t, v, s) for t, v, s in plan]
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, audio=np.concatenate(waves), lengths=np.array([len(w) for w in waves]))
        os.replace(tmp, path)
    return [Utterance(t, v, s, w) for (t, v, s), w in zip(plan, waves)]
