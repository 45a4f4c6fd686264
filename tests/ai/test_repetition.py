"""The repetition guard's normalization and hash (app/ai/repetition.py)."""

from __future__ import annotations

import string

from hypothesis import example, given
from hypothesis import strategies as st

from app.ai.repetition import normalize_text, text_hash

TEMPLATE = "Olá, {name}! Vi que a {company} cresceu 30% em 2024. Podemos conversar amanhã?"


def test_the_leads_name_and_company_are_taken_out() -> None:
    ana = TEMPLATE.format(name="Ana Souza", company="Acme Ltda")
    bia = TEMPLATE.format(name="Beatriz", company="Padaria São João")
    assert normalize_text(ana, name="Ana Souza", company="Acme Ltda") == (
        "olaviqueacresceuempodemosconversaramanha"
    )
    assert text_hash(ana, name="Ana Souza", company="Acme Ltda") == text_hash(
        bia, name="Beatriz", company="Padaria São João"
    )


def test_a_first_name_alone_and_a_company_in_another_case_are_taken_out() -> None:
    assert normalize_text("Oi ANA, tudo bem na acme?", name="Ana Souza", company="ACME") == (
        "oitudobemna"
    )


def test_short_words_of_a_name_go_only_with_the_whole_name() -> None:
    text = "Oi! O Banco do Brasil fala do seu plano."
    assert normalize_text(text, company="Banco do Brasil") == "oiofaladoseuplano"


def test_digits_case_punctuation_whitespace_and_accents_do_not_count() -> None:
    a = "Oi! Temos 3 vagas às 10h.\n\nVocê   vem?"
    b = "oi temos vagas as h voce vem"
    c = "OI... TEMOS 99 VAGAS ÀS 7H — VOCÊ VEM?! 🙂"
    assert text_hash(a) == text_hash(b) == text_hash(c)
    assert normalize_text(a) == "oitemosvagasashvocevem"


def test_accents_fold_the_same_whether_composed_or_not() -> None:
    composed, decomposed = "Promoção", "Promoc\u0327a\u0303o"
    assert normalize_text(composed) == normalize_text(decomposed) == "promocao"


def test_different_texts_hash_differently() -> None:
    assert text_hash("Oi, tudo bem? Temos uma oferta.") != text_hash(
        "Oi, tudo bem? Temos uma novidade."
    )
    assert text_hash("Bom dia") != text_hash("Boa tarde")


def test_the_hash_is_stable_sha256_hex() -> None:
    # stored in the database and compared across deploys: it must never change for a text
    assert text_hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert text_hash("Oi, Ana!", name="Ana") == text_hash("oi")


letters = st.text(alphabet=string.ascii_letters + "áéíóúãõçÁÉÍÓÚÃÕÇ", min_size=1, max_size=12)
noise = st.text(alphabet=string.digits + string.punctuation + " \t\n", max_size=4)


@given(
    st.lists(letters, min_size=1, max_size=12),
    st.lists(noise, min_size=13, max_size=13),
    st.lists(noise, min_size=13, max_size=13),
)
def test_only_the_letters_count_whatever_the_noise_between_words(
    words: list[str], noise_a: list[str], noise_b: list[str]
) -> None:
    a = "".join(n + w for n, w in zip(noise_a, words, strict=False)) + noise_a[-1]
    b = "".join(n + w.upper() for n, w in zip(noise_b, words, strict=False)) + noise_b[-1]
    assert text_hash(a) == text_hash(b)


@given(st.text(max_size=200), st.text(max_size=30), st.text(max_size=30))
@example("\u1369", "", "")  # an Ethiopic digit: a number (No), not a decimal digit (Nd)
@example("\u2120", "", "")  # the service mark: "SM" once decomposed, so cased after
def test_normalized_text_has_only_lowercase_letters(text: str, name: str, company: str) -> None:
    normalized = normalize_text(text, name=name, company=company)
    assert all(c.isalpha() for c in normalized)
    assert normalize_text(normalized) == normalized  # normalizing twice changes nothing
