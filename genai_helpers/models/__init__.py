"""Complete models, one readable file each, built from the primitives (:mod:`genai_helpers.attention`,
:mod:`genai_helpers.transformer`, :mod:`genai_helpers.positional`, :mod:`genai_helpers.sampling`) and
trained by :func:`genai_helpers.training.train`.

- :mod:`~genai_helpers.models.transformer_lm`    chapter 01's small transformer language model
- :mod:`~genai_helpers.models.gpt`               GPT with learned/sinusoidal/rotary positions, a KV cache
  (ch. 04, 06, 09, 12)
- :mod:`~genai_helpers.models.ngram_lm`          a count-based n-gram language model, the baseline of chapter 04
- :mod:`~genai_helpers.models.seq2seq`           an encoder-decoder transformer with beam search (ch. 05)
- :mod:`~genai_helpers.models.ngram_classifier`  a hashed n-gram text classifier: chapter 08's router and
  injection detector
- :mod:`~genai_helpers.models.captioning`        CNN and ViT encoders, a caption decoder, the captioner (ch. 10)
- :mod:`~genai_helpers.models.gan`               DCGAN generator and discriminator, GAN and WGAN-GP losses (ch. 11)
- :mod:`~genai_helpers.models.vae`               a convolutional VAE (ch. 11)
- :mod:`~genai_helpers.models.vqvae`             VQ-VAE: vector quantiser, encoder, decoder (ch. 12)
- :mod:`~genai_helpers.models.vqgan`             VQGAN-lite: patch discriminator, hinge losses, adaptive weight (ch. 12)
- :mod:`~genai_helpers.models.token_prior`       sampling a grid of image tokens from a GPT prior (ch. 12)
- :mod:`~genai_helpers.models.maskgit`           MaskGIT: masked-token training and parallel decoding (ch. 12)

The diffusion models of chapters 13-15 live in :mod:`genai_helpers.diffusion`. Every model class and
its config is importable from here (``from genai_helpers.models import GPT, GPTConfig``).
"""
from .captioning import CaptionDecoder, Captioner, CNNEncoder, ViTEncoder
from .gan import DCGANDiscriminator, DCGANGenerator
from .gpt import GPT, GPTConfig
from .ngram_classifier import HashedNgramClassifier, ngram_features
from .ngram_lm import NGramLM
from .seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from .transformer_lm import TransformerLM, TransformerLMConfig
from .vae import ConvVAE
from .vqvae import VQVAE, VectorQuantizer, VQVAEConfig

__all__ = ["CNNEncoder", "CaptionDecoder", "Captioner", "ConvVAE", "DCGANDiscriminator", "DCGANGenerator", "GPT",
           "GPTConfig", "HashedNgramClassifier", "NGramLM", "Seq2SeqConfig", "Seq2SeqTransformer", "TransformerLM",
           "TransformerLMConfig", "VQVAE", "VQVAEConfig", "VectorQuantizer", "ViTEncoder", "ngram_features"]
from .vqa import VQAModel, question_batch  # noqa: E402  (chapter 10's visual question answering)

__all__ += ["VQAModel", "question_batch"]
from .gan_toy import ToyCritic, ToyGenerator, mode_coverage, ring_of_gaussians, train_toy_gan  # noqa: E402  (ch. 11, §11.8)

__all__ += ["ToyCritic", "ToyGenerator", "mode_coverage", "ring_of_gaussians", "train_toy_gan"]
