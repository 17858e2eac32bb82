"""Opt-out intent: the writer asking, for themselves, not to be written to again.

Read only in the reply's new text (quotes, signatures and list footers already cut) and the
subject. A request about someone else ("please do not contact the family until I've spoken
with them") is not an opt-out: it is part of a referral. Languages: en, de, fr, es, it, nl, pt.
"""

from __future__ import annotations

import re

_FIRST_PERSON = re.compile(
    r"\bunsubscribe\b|\bremove (?:me|us|my (?:name|address|e-?mail))\b|\btake (?:me|us|my "
    r"(?:name|address)) off\b|\bopt(?:-| )?(?:me )?out\b|"
    r"\b(?:stop|quit|cease) (?:e-?mailing|emailing|contacting|sending|writing|messaging)"
    r"(?: (?:me|us)| to (?:me|us))?\b|"
    r"\b(?:do not|don'?t|please don'?t|never) (?:e-?mail|contact|write to|write|message|"
    r"send) (?:me|us)\b|"
    r"\b(?:no|not any) (?:more|further) (?:e-?mails?|messages|contact)\b|"
    r"\bdon'?t (?:want|wish) to (?:receive|get|hear)\b|\bdo not (?:want|wish) to (?:receive|"
    r"get|be contacted)\b|\bnot interested[,.;!]? (?:please )?(?:remove|stop|do not|don'?t)|"
    r"\boff (?:of )?your (?:mailing |e-?mail |contact |distribution )?list\b|"
    r"\bremoved? (?:\w+ ){0,4}from your (?:mailing |e-?mail |contact |distribution )?list\b|"
    r"\b(?:do not|don'?t) send (?:any )?(?:further|more) (?:e-?mails|messages|solicitations|"
    r"mail|emails)\b|"
    r"\b(?:don'?t|do not) send (?:anything|any)(?: more| further)?(?: here| to (?:me|us|this "
    r"(?:address|inbox)))?(?=\s*(?:[.!;,]|please|thanks?|$))|\b(?:left|leave|take) "
    r"(?:us|me|the \w+ office|this (?:address|inbox)) off\b|"
    r"\b(?:delete|remove|drop|erase) (?:my|our|this) (?:e-?mail )?(?:address|e-?mail|name|"
    r"contact)\b|\b(?:prefer|would rather|'d rather) not (?:to )?(?:receive|get|hear)\b|"
    r"\bnot interested\W{1,4}(?:please )?(?:stop|remove|do not|don'?t)\b|"
    r"\bno more (?:of )?(?:these|this|e-?mails?|messages|mail)\b|\b(?:remove|take) (?:this|our|"
    r"these) (?:e-?mail )?(?:address|addresses|e-?mails?)\b|\bstop (?:sending|emailing) "
    r"(?:these|this|us)\b|\b(?:do not|don'?t) (?:want|wish) (?:any )?(?:more|further)\b|"
    # de
    r"\b(?:nehmen|streichen|entfernen|löschen|tragen) sie mich\b|\baus (?:ihrem|dem|ihrer) "
    r"(?:verteiler|e-?mail-?verteiler|liste|adressliste|mailingliste)\b|\babmelden\b|"
    r"\bkeine (?:weiteren |weitere )?(?:e-?mails|nachrichten|zusendungen|kontaktaufnahmen?)\b|"
    r"\b(?:schreiben|kontaktieren|mailen) sie mir (?:bitte )?nicht mehr\b|\bkontaktieren sie "
    r"mich (?:bitte )?nicht mehr\b|"
    r"\bvon weiteren (?:zusendungen|e-?mails|nachrichten|mails|kontaktaufnahmen|anschreiben)|"
    r"\b(?:möchte|möchten|wollen|will) (?:ich |wir )?keine (?:weiteren |weitere )?"
    r"(?:e-?mails|nachrichten|zusendungen|post)\b|"
    # fr
    r"\bne plus (?:m'|m\u2019)(?:écrire|envoyer|contacter)|\bne (?:m'|m\u2019)(?:écrivez|envoyez|"
    r"contactez) plus\b|\bne me (?:contactez|recontactez|sollicitez) plus\b|"
    r"\b(?:retirez|supprimez|enlevez|désinscrivez|désabonnez)[- ]moi\b|\bme (?:retirer|"
    r"désinscrire|désabonner)\b|\bdésinscription\b|\bdésabonnement\b|"
    r"\b(?:retirer|supprimer|enlever|radier) (?:mon adresse|mes coordonnées|mon nom|"
    r"mon e-?mail)|\bne plus (?:me )?(?:solliciter|contacter|écrire)|"
    r"\bne plus (?:nous|me) (?:envoyer|écrire|contacter|solliciter)|\b(?:retirer|supprimer) "
    r"(?:cette|notre) adresse|\bne (?:souhaite|souhaitons|veux|voulons) plus recevoir|"
    r"\bcesser de (?:m'|nous |m\u2019)(?:envoyer|écrire|contacter)|"
    # es
    r"\bno me (?:envíe|envíen|envies|escriba|escriban|contacte|contacten|manden?) más\b|"
    r"\b(?:darme|dénme|deme) de baja\b|\b(?:elimínenme|elimíneme|quítenme|quíteme|"
    r"bórrenme|bórreme|sáquenme|sáqueme)\b|\bno deseo recibir\b|\bno quiero recibir\b|"
    r"\bno (?:me|nos) (?:siga|siguiera|sigan|siguieran) enviando|\bprefiero no recibir|"
    r"\belimine,? (?:por favor,? )?(?:mi|nuestro) (?:correo|dirección|email)|"
    r"\bno (?:deseamos|queremos) recibir\b|\b(?:dé|den|dar|de) de baja (?:esta|mi|nuestra|"
    r"este)\b|"
    # it
    r"\b(?:cancellatemi|cancellami|rimuovetemi|rimuovermi|toglietemi|eliminatemi)\b|"
    r"\bcancellare (?:questo|il mio|il nostro|questa) (?:indirizzo|email|e-mail|contatto)|"
    r"\bnon (?:desideriamo|vogliamo) (?:più )?ricevere\b|"
    r"\bnon (?:scrivetemi|contattatemi|inviatemi|mandatemi) più\b|\bnon (?:desidero|voglio) "
    r"(?:più )?ricevere\b|\bdisiscri(?:vere|vetemi|zione)\b|"
    # nl
    r"\b(?:uitschrijven|afmelden)\b|\bverwijder(?:t)? (?:mij|me)\b|\bhaal (?:mij|me)\b|"
    r"\bstuur (?:me|mij|ons) geen\b|\b(?:wil|willen) (?:graag )?geen (?:e-?mails|berichten|"
    r"mails) meer\b|"
    r"\b(?:mij|me|ons|ons adres|mijn adres) (?:van|uit) (?:uw|de|jullie|het) \w+ "
    r"(?:te )?(?:verwijderen|halen)|\bliever niet meer\b|"
    r"\bniet meer (?:benaderd|gemaild|gecontacteerd) (?:te )?worden|"
    r"\b(?:mail|e-?mail|benader|contacteer) (?:mij|me) (?:a\.u\.b\. |alstublieft |aub )?"
    r"niet meer\b|\bgeen (?:e-?mails|berichten|mails) meer\b|\bniet meer (?:mailen|"
    r"benaderen|contacteren)\b|"
    # pt
    r"\b(?:remova|removam|retire|tire|exclua|excluam)[- ](?:me|meu)\b|\bdescadastr|"
    r"\bnão (?:me )?(?:envie|enviem|contacte|contactem|contate|contatem|escreva|escrevam) "
    r"mais\b|\bnão (?:quero|desejo|queremos|desejamos) (?:mais )?receber\b|"
    r"\bcancelar (?:a )?(?:minha )?inscrição\b|\bdeix(?:e|em|ar) de (?:me|nos) (?:enviar|mandar|"
    r"contactar|contatar|escrever)|\bretir(?:e|em|ar) (?:este|o meu|o nosso|meu|nosso) "
    r"(?:endereço|e-?mail|contacto|contato)",
    # matched against lower-cased text: faster than IGNORECASE
)
# What follows "don't contact/stop emailing" when it is about someone else.
_THIRD_PARTY = re.compile(
    r"^\W*(?:the|his|her|their|my|our|this|that|any) (?:\w+ ){0,2}?(?:family|families|patient|"
    r"patients|client|clients|parents?|child|children|kids?|son|daughter|mother|father|"
    r"husband|wife|spouse|partner|student|colleague|office|staff|member)|^\W*(?:them|him|her)\b",
    # matched against lower-cased text: faster than IGNORECASE
)
_ABOUT_OTHERS = re.compile(
    r"\b(?:do not|don'?t|please don'?t|never|stop) (?:e-?mail(?:ing)?|contact(?:ing)?|"
    r"writ(?:e|ing)(?: to)?|call(?:ing)?|reach(?:ing)? out to|send(?:ing)?)\s",
    # matched against lower-cased text: faster than IGNORECASE
)
# A list or notification footer telling how to stop mail: not the writer's own request.
_FOOTER = re.compile(
    r"https?://|\bclick\b|\blink\b|\bif you (?:wish|want|would like|no longer|prefer)|"
    r"\bif you(?:'d| would) (?:rather|prefer)|\breply\b.{0,20}[\"\u201c\u00ab]|"
    r"\bto unsubscribe\b|pour (?:vous )?(?:désinscrire|désabonner)|para (?:darse de baja|"
    r"cancelar|se descadastrar|descadastrar)|um sich abzumelden|per (?:annullare|"
    r"cancellarti|disiscriverti)|om (?:je|u) af te melden|\breply\b.{0,30}\bunsubscribe|"
    r"répondez|antworten sie|responda|rispondi|beantwoord|"
    r"\bunsubscribe (?:here|at|from this|by|link)|\bmanage (?:your )?"
    r"(?:preferences|subscription)|\byou (?:are )?receiv(?:e|ing) this",
    # matched against lower-cased text: faster than IGNORECASE
)
_WRAPPED = re.compile(r"(?<![\n.!?:])\n(?!\n)")
_NEGATED = re.compile(
    r"\b(?:don'?t|do not|never|no need to|won'?t|wouldn'?t|nicht|ne pas)(?:\s+\w+){0,3}\s+$"
)
SHORT = 80  # words: an opt-out in a message this short is what it is about


# A reply that says only the word a footer asks for ("reply 'remove'"), once its mobile
# signature is gone.
_ONE_WORD = re.compile(
    r"^\W*(?:please\W+)?(?:remove(?: me)?|unsubscribe(?: me)?|stop|opt[ -]?out|désinscription|"
    r"désabonnement|abmelden|austragen|baja|cancellami|cancellazione|afmelden|uitschrijven|"
    r"descadastrar|remover|no,? thanks?|no,? thank you|not interested)\W*(?:please|thanks?|"
    r"thank you|bitte|merci|gracias|grazie|obrigad[oa])?"
    r"\W*$"
)
_NO_WORDS = re.compile(r"[\W_]+")
_MOBILE_SIGNATURE = re.compile(
    r"^(?:sent from my \w+.*|get outlook for \w+.*|von meinem \w+ gesendet|envoyé de mon \w+"
    r"|enviado desde mi \w+|inviato da \w+.*|verzonden vanaf mijn \w+|enviado do meu \w+)$"
)


def opt_out_phrase(text: str) -> str | None:
    """The phrase in which the writer asks not to be written to, if any (lower-cased)."""
    text = text.replace("\u2019", "'")  # a typographic apostrophe (don\u2019t)
    lines = [line.strip() for line in text[:2000].lower().splitlines()]
    own = [
        line
        for line in lines
        if line and not _MOBILE_SIGNATURE.match(line) and not _NO_WORDS.fullmatch(line)
    ]
    if len(own) == 1 and _ONE_WORD.match(own[0]):
        return own[0]
    # Lower-cased, and a line wrapped mid-sentence joined ("de ne\nplus me solliciter").
    text = _WRAPPED.sub(" ", text[:20_000].lower())
    for found in _FIRST_PERSON.finditer(text):
        phrase = found.group(0)
        after = text[found.end() : found.end() + 60]
        if _ABOUT_OTHERS.match(phrase + " ") and _THIRD_PARTY.match(after):
            continue
        if _NEGATED.search(text[max(0, found.start() - 40) : found.start()]):
            continue  # "please don't stop sending the openings"
        if _FOOTER.search(_sentence(text, found.start(), found.end())):
            continue
        return phrase
    return None


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence (or line) around text[start:end]; a dot inside a word or address
    (unsubscribe.html, example.com) ends nothing."""
    left = max((m.end() for m in _BOUNDARY.finditer(text, 0, start)), default=0)
    right = _BOUNDARY.search(text, end)
    return text[left : right.start() if right else len(text)]


_BOUNDARY = re.compile(r"[.!?](?=\s)|\n")


__all__ = ["SHORT", "opt_out_phrase"]
