"""gradtui.watch on the keras-io shapes of training: a GAN wrapper with two optimizers, a
distiller whose teacher nobody updates, fine-tuning that compiles again, two watches on one model.

Each compares the watched training with the same training unwatched (weights bit-identical) and
the recorded gradient norms with the step's own log of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradtui
from gradtui.runlog import read_run

LATENT = 4


def gan_class():
    import keras
    import tensorflow as tf

    class GAN(keras.Model):
        """The keras-io DCGAN's shape: sub-models called without ``training=True``, two
        optimizers, no ``call``; the step also logs its own first-layer gradient norms."""

        def __init__(self, discriminator, generator):
            super().__init__()
            self.discriminator = discriminator
            self.generator = generator
            self.seed_generator = keras.random.SeedGenerator(1337)

        def compile(self, d_optimizer, g_optimizer, loss_fn):
            super().compile()
            self.d_optimizer = d_optimizer
            self.g_optimizer = g_optimizer
            self.loss_fn = loss_fn

        def train_step(self, real):
            batch = tf.shape(real)[0]
            z = keras.random.normal((batch, LATENT), seed=self.seed_generator)
            fake = self.generator(z)
            images = tf.concat([fake, real], 0)
            labels = tf.concat([tf.ones((batch, 1)), tf.zeros((batch, 1))], 0)
            with tf.GradientTape() as tape:
                d_loss = self.loss_fn(labels, self.discriminator(images))
            grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
            self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights, strict=True))
            d_norm = tf.sqrt(tf.reduce_sum(grads[0] ** 2) + tf.reduce_sum(grads[1] ** 2))
            z = keras.random.normal((batch, LATENT), seed=self.seed_generator)
            with tf.GradientTape() as tape:
                g_loss = self.loss_fn(tf.zeros((batch, 1)), self.discriminator(self.generator(z)))
            grads = tape.gradient(g_loss, self.generator.trainable_weights)
            self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights, strict=True))
            g_norm = tf.sqrt(tf.reduce_sum(grads[0] ** 2) + tf.reduce_sum(grads[1] ** 2))
            return {"d_loss": d_loss, "g_loss": g_loss, "d_norm": d_norm, "g_norm": g_norm}

    return GAN


def make_gan():
    import keras

    keras.utils.set_random_seed(0)
    disc = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="d1"),
            keras.layers.Dense(1, name="d2"),
        ],
        name="discriminator",
    )
    gen = keras.Sequential(
        [
            keras.Input((LATENT,)),
            keras.layers.Dense(16, activation="relu", name="g1"),
            keras.layers.Dense(8, name="g2"),
        ],
        name="generator",
    )
    gan = gan_class()(disc, gen)
    gan.compile(
        keras.optimizers.Adam(1e-3),
        keras.optimizers.Adam(1e-3),
        keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return gan


def fit_logging(model, x, **kwargs):
    import keras

    log: list[dict] = []
    cb = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: log.append(dict(logs)))
    model.fit(x, epochs=1, batch_size=32, verbose=0, callbacks=[cb], **kwargs)
    return log


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(256, 8)).astype("float32")


def test_a_gan_wrapper_records_both_optimizers_rows_and_trains_the_same(tmp_path: Path, real) -> None:
    plain = make_gan()
    assert not plain.built  # the keras-io wrapper: weights exist, built is False
    plain_log = fit_logging(plain, real)
    gan = make_gan()
    monitor = gradtui.watch(gan, out=tmp_path / "gan")
    assert gan.d_optimizer in monitor.optimizers and gan.g_optimizer in monitor.optimizers
    log = fit_logging(gan, real)
    for a, b in zip(plain.weights, gan.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    run = read_run(tmp_path / "gan")
    d = [r for r in run.records if "discriminator/d1" in r["layers"]]
    g = [r for r in run.records if "generator/g1" in r["layers"]]
    # one record per update of each optimizer, each with only the rows it updates
    assert [r["step"] for r in d] == [r["step"] for r in g] == list(range(8))
    assert set(d[0]["layers"]) == {"discriminator/d1", "discriminator/d2"}
    assert set(g[0]["layers"]) == {"generator/g1", "generator/g2"}
    assert len(run.records) == 16 and run.summary["records"] == 16 and run.summary["lost_records"] == 0
    np.testing.assert_allclose(
        [r["layers"]["discriminator/d1"]["grad_norm"] for r in d], [x["d_norm"] for x in log], rtol=1e-5
    )
    np.testing.assert_allclose(
        [r["layers"]["generator/g1"]["grad_norm"] for r in g], [x["g_norm"] for x in log], rtol=1e-5
    )
    assert [x["d_norm"] for x in log] == [x["d_norm"] for x in plain_log]
    # the sub-models are called without training=True: their activations are measured anyway
    assert 0.0 <= d[0]["layers"]["discriminator/d1"]["dead"] <= 1.0
    assert 0.0 <= g[0]["layers"]["generator/g1"]["dead"] <= 1.0
    monitor.close()


def test_optimizer_takes_a_list_and_an_unused_optimizer_is_said(tmp_path: Path, real, capsys) -> None:
    gan = make_gan()
    with gradtui.watch(gan, out=tmp_path / "list", optimizer=[gan.g_optimizer]) as monitor:
        fit_logging(gan, real)
    records = read_run(tmp_path / "list").records
    assert len(records) == 8 and all(set(r["layers"]) == {"generator/g1", "generator/g2"} for r in records)
    assert monitor.optimizers == [gan.g_optimizer]
    capsys.readouterr()
    gan = make_gan()
    # what forcing the old check gave: the compile()'s own optimizer, never applied
    with gradtui.watch(gan, out=tmp_path / "unused", optimizer=gan.optimizer):
        fit_logging(gan, real)
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "nothing recorded after 8 steps" in err
        and "model.optimizer (RMSprop)" in err
    )


def test_close_gives_back_exactly_what_its_watch_took(tmp_path: Path, real) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    y = real[:, :1]
    first = gradtui.watch(model, out=tmp_path / "one")
    second = gradtui.watch(model, out=tmp_path / "two")
    model.fit(real, y, epochs=1, batch_size=32, verbose=0)
    first.close()
    model.fit(real, y, epochs=1, batch_size=32, verbose=0)  # the second watch still records
    second.close()
    assert len(read_run(tmp_path / "one").records) == 8 and len(read_run(tmp_path / "two").records) == 16
    summary = (tmp_path / "one" / "summary.json").read_text()
    model.fit(real, y, epochs=1, batch_size=32, verbose=0)  # unwatched now
    assert (tmp_path / "one" / "summary.json").read_text() == summary
    assert "fit" not in vars(model) and "_backend_apply_gradients" not in vars(model.optimizer)
    assert not any(k.startswith("__gradtui") for k in vars(model))


def make_vae():
    """The keras-io VAE's shape: encoder/decoder sub-models called without ``training=True`` in
    a custom ``train_step``, ``compile(optimizer=...)``. The encoder's first layer starts with 12
    of its 16 ReLU units dead (a bias of -10): a 75%-dead layer."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    bias = keras.initializers.Constant([-10.0] * 12 + [0.1] * 4)
    enc = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu", bias_initializer=bias, name="e1")]
        + [keras.layers.Dense(2 * LATENT, name="e2")],
        name="encoder",
    )
    dec = keras.Sequential(
        [
            keras.Input((LATENT,)),
            keras.layers.Dense(16, activation="relu", name="x1"),
            keras.layers.Dense(8, name="x2"),
        ],
        name="decoder",
    )

    class VAE(keras.Model):
        def __init__(self, encoder, decoder):
            super().__init__()
            self.encoder, self.decoder = encoder, decoder
            self.seed_generator = keras.random.SeedGenerator(1337)

        def train_step(self, data):
            with tf.GradientTape() as tape:
                mean, log_var = tf.split(self.encoder(data), 2, axis=1)
                eps = keras.random.normal(tf.shape(mean), seed=self.seed_generator)
                z = mean + tf.exp(0.5 * log_var) * eps
                recon = tf.reduce_mean(tf.reduce_sum(tf.square(data - self.decoder(z)), axis=1))
                kl = -0.5 * tf.reduce_mean(tf.reduce_sum(1 + log_var - mean**2 - tf.exp(log_var), axis=1))
                loss = recon + kl
            grads = tape.gradient(loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
            return {"loss": loss, "e2": tf.sqrt(tf.reduce_sum(grads[2] ** 2) + tf.reduce_sum(grads[3] ** 2))}

    vae = VAE(enc, dec)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    return vae


def test_a_vae_wrapper_measures_its_dead_units_in_passes_without_training_flag(tmp_path: Path, real) -> None:
    plain = make_vae()
    plain_log = fit_logging(plain, real)
    vae = make_vae()
    assert not vae.built
    with gradtui.watch(vae, out=tmp_path / "vae"):
        log = fit_logging(vae, real)
    for a, b in zip(plain.weights, vae.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [x["e2"] for x in log] == [x["e2"] for x in plain_log]
    run = read_run(tmp_path / "vae")
    assert [r["step"] for r in run.records] == list(range(8))
    assert [r["layers"]["encoder/e1"]["dead"] for r in run.records] == [0.75] * 8
    np.testing.assert_allclose(
        [r["layers"]["encoder/e2"]["grad_norm"] for r in run.records], [x["e2"] for x in log], rtol=1e-5
    )
    assert set(run.records[0]["layers"]) == {"encoder/e1", "encoder/e2", "decoder/x1", "decoder/x2"}


def make_wgan_gp():
    """The keras-io WGAN-GP's shape: three discriminator updates per generator update, each with
    a gradient penalty (a nested GradientTape through the discriminator)."""
    import keras
    import tensorflow as tf

    GAN = gan_class()

    class WGAN(GAN):
        d_steps, gp_weight = 3, 10.0

        def train_step(self, real):
            batch = tf.shape(real)[0]
            for _ in range(self.d_steps):
                z = keras.random.normal((batch, LATENT), seed=self.seed_generator)
                with tf.GradientTape() as tape:
                    fake = self.generator(z, training=True)
                    d_loss = tf.reduce_mean(self.discriminator(fake, training=True)) - tf.reduce_mean(
                        self.discriminator(real, training=True)
                    )
                    alpha = keras.random.uniform((batch, 1), seed=self.seed_generator)
                    mixed = real + alpha * (fake - real)
                    with tf.GradientTape() as gp_tape:
                        gp_tape.watch(mixed)
                        pred = self.discriminator(mixed, training=True)
                    norm = tf.sqrt(tf.reduce_sum(tf.square(gp_tape.gradient(pred, [mixed])[0]), axis=1))
                    d_loss += self.gp_weight * tf.reduce_mean((norm - 1.0) ** 2)
                grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
                self.d_optimizer.apply_gradients(
                    zip(grads, self.discriminator.trainable_variables, strict=True)
                )
            z = keras.random.normal((batch, LATENT), seed=self.seed_generator)
            with tf.GradientTape() as tape:
                g_loss = -tf.reduce_mean(self.discriminator(self.generator(z, training=True), training=True))
            grads = tape.gradient(g_loss, self.generator.trainable_variables)
            self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
            g_norm = tf.sqrt(tf.reduce_sum(grads[0] ** 2) + tf.reduce_sum(grads[1] ** 2))
            return {"d_loss": d_loss, "g_loss": g_loss, "g_norm": g_norm}

    gan = make_gan()
    gan.__class__ = WGAN
    return gan


def test_a_wgan_gp_records_three_critic_updates_per_generator_update(tmp_path: Path, real) -> None:
    plain = make_wgan_gp()
    plain_log = fit_logging(plain, real)
    gan = make_wgan_gp()
    with gradtui.watch(gan, out=tmp_path / "wgan"):
        log = fit_logging(gan, real)
    for a, b in zip(plain.weights, gan.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [x["g_norm"] for x in log] == [x["g_norm"] for x in plain_log]
    run = read_run(tmp_path / "wgan")
    d = [r for r in run.records if "discriminator/d1" in r["layers"]]
    g = [r for r in run.records if "generator/g1" in r["layers"]]
    assert [r["step"] for r in d] == list(range(24)) and [r["step"] for r in g] == list(range(8))
    np.testing.assert_allclose(
        [r["layers"]["generator/g1"]["grad_norm"] for r in g], [x["g_norm"] for x in log], rtol=1e-5
    )
    assert run.summary["steps"] == 24 and run.summary["lost_records"] == 0
