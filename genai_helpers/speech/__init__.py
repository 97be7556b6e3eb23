"""Text-to-speech at toy scale, built like the book's other systems (chapter 16).

- :mod:`~genai_helpers.speech.data`        espeak-ng reads sentences of a small travel/weather domain in
                                           four voices and three speeds: (text, waveform) pairs, offline
- :mod:`~genai_helpers.speech.features`    STFT, log-mel (equal to librosa's), Griffin-Lim, MFCC, DTW,
                                           mel-cepstral distortion, HTML audio players
- :mod:`~genai_helpers.speech.codec`       a neural audio codec: conv autoencoder, residual VQ, inverse-STFT head
- :mod:`~genai_helpers.speech.tts`         the dual autoregressive model (slow transformer per frame, fast
                                           transformer per codebook, RMSNorm), duration model, streaming
- :mod:`~genai_helpers.speech.recognizer`  a word recogniser (CTC) and speaker embedding: the chapter's stand-in
                                           for an ASR such as Whisper, to measure intelligibility
- :mod:`~genai_helpers.speech.weights`     load the shipped codec and TTS weights (sha256-checked)
- :mod:`~genai_helpers.speech.pretrain`    ``make pretrain-speech``: train both once and write the weights
"""
__all__ = ["data", "features", "codec", "tts", "recognizer", "weights", "pretrain"]
