"""Machine-written answers: auto-reply markers, out-of-office, "no longer with us", and
challenge-response systems. Pure: headers and the message's own text in, a reading out.

Languages: the subject prefixes cover en, de, fr, es, it, nl, pt, pl and sv; the phrases en,
de, fr, es, it, nl and pt. A reply that came through a mailing list carries ``Precedence:
list``; that alone does not make it an auto-reply when it answers one of our messages.
"""

from __future__ import annotations

import re
from email.message import Message

from outreach.domain.headers import Headers, header

# Subject prefixes written by auto-responders (Exchange, Gmail, Apple, Zimbra...), at the
# start of the subject, in the languages above.
AUTO_SUBJECT = re.compile(
    r"^\s*\[?\s*(auto(?:matic|matische|matisch|matiskt|matyczna)?[- ]?(?:reply|response|"
    r"responder|answer|antwort|antwoord|svar|odpowied[zź])|autoreply|autoresponse|"
    r"out of (?:the )?office|ooo\b|away from (?:the )?office|"
    r"abwesen(?:heit|heitsnotiz|d)|automatische (?:antwort|rückantwort)|autom\. antwort|"
    r"r[ée]ponse automatique|absence du bureau|absent(?:e)?\b|message d'absence|"
    r"respuesta autom[aá]tica|fuera de (?:la )?oficina|ausente\b|respuesta de ausencia|"
    r"risposta automatica|fuori (?:sede|ufficio)|assente\b|"
    r"automatisch antwoord|afwezig|niet aanwezig|"
    r"resposta autom[aá]tica|fora do escrit[oó]rio|"
    r"odpowied[zź] automatyczna|automatyczna odpowied[zź]|nieobecno[sś][cć]|poza biurem|"
    r"automatiskt svar|autosvar|fr[aå]nvarande|ej p[aå] kontoret)",
    # matched against lower-cased text: faster than IGNORECASE
)
# Away from work, in the message's own words.
OUT_OF_OFFICE = re.compile(
    r"out of (?:the )?office|away from (?:the |my )?(?:office|desk|practice)|"
    r"(?:on|taking) (?:an? )?(?:annual |parental |maternity |paternity |medical |sick |"
    r"family |study |bereavement |extended |personal )?(?:leave|sabbatical)|sabbatical|"
    r"on (?:vacation|holidays?|pto)|away until|(?:currently|will be) (?:away|out|traveling|"
    r"travelling|unavailable)|limited (?:access to|ability to (?:check|respond to)) "
    r"(?:my )?e-?mail|not in the office|out until|back in the office|"
    r"away from (?:e-?mail|my inbox)|(?:i'm|i am|i\u2019m) away|away at|returning (?:on|the week)|"
    r"(?:cabinet|bureau|secrétariat|praxis|büro|oficina|consultorio|studio|ufficio|"
    r"praktijk|kantoor|consultório|escritório) (?:est |sera |ist |bleibt |está |estará |"
    r"è |resta |is |blijft )?(?:fermé|geschlossen|cerrad[oa]|chius[oa]|gesloten|fechad[oa])|"
    r"fermé jusqu|afastad[oa]|(?:office|practice|clinic|school|we) (?:is |are |will "
    r"be )?closed|closed for|(?:winter|spring|summer|holiday|christmas|thanksgiving) "
    r"(?:break|holidays?|closure)|(?:i will|i'll) be back|when i(?:'m| am) back|upon my "
    r"return|in trial|at a conference|(?:currently )?travel(?:l)?ing|"
    r"abwesen(?:d|heit)|nicht im (?:büro|hause|haus|dienst)|außer haus|im urlaub|urlaub|"
    r"elternzeit|mutterschutz|dienstreise|nicht erreichbar|"
    r"absente?s?\b|en (?:congés?|vacances)|hors du bureau|congé (?:parental|maternité|"
    r"paternité|sabbatique)|de retour le|"
    r"fuera de (?:la )?oficina|ausente|de vacaciones|de (?:baja|permiso|licencia)|"
    r"estar[ée] fuera|no estar[ée] (?:disponible|en la oficina)|"
    r"fuori (?:sede|ufficio)|assente|in (?:ferie|vacanza|congedo|maternità)|"
    r"afwezig|niet (?:op kantoor|aanwezig|bereikbaar)|(?:met|op) vakantie|"
    r"(?:zwangerschaps|ouderschaps|studie)?verlof|"
    r"fora do escrit[oó]rio|(?:de|em) f[ée]rias|(?:de|em) licen[cç]a|ausente|"
    r"na urlopie|urlop|nieobecn|poza biurem|"
    r"ledig|semester|tjänstledig|föräldraledig|frånvarande|tillbaka den|ej på kontoret|"
    r"ej i tjänst|arrêt maladie|en arrêt|congé maladie|krankgeschrieben|krank|"
    r"baja médica|malattia|ziek|(?:en un|en el|at a|at the|auf einem|au|al|op een|num) "
    r"(?:congreso|congress|conference|kongress|congrès|congresso|congres|congresso)|"
    r"de viaje|auf reisen|en déplacement|in viaggio|op reis|em viagem|no podré atender|"
    r"non potrò|je ne consulte pas|ne consulte pas ma messagerie",
    # matched against lower-cased text: faster than IGNORECASE
)
# No longer at this address's organization.
LEFT_ORGANIZATION = re.compile(
    r"no longer (?:with|at|employed|working|part of|associated)|"
    r"(?:has|have) left (?!for\b|a\b|an\b|the office for\b|early\b|you\b)"
    r"|retired (?:as|from)|nicht mehr (?:als \w+ )?(?:an|bei|im|in|für) .{0,60}tätig"
    r"|(?:is|am) no longer (?:with|at|employed|working)|no longer works? (?:at|for|here)|"
    r"(?:has|have) (?:retired|moved on)|"
    r"nicht mehr (?:bei|im|für|in|tätig|beschäftigt)|(?:hat|habe) (?:das|unser) "
    r"(?:unternehmen|haus|team|praxis) verlassen|"
    r"ne (?:fait|travaille) plus (?:partie|pour|chez|au sein)|a quitt[ée]|"
    r"ya no (?:trabaja|forma parte|est[aá] (?:en|con))|dej[oó] (?:la|nuestra) (?:empresa|"
    r"organizaci[oó]n|cl[ií]nica)|"
    r"non (?:lavora|fa) più|non è più|ha lasciato|"
    r"niet meer (?:werkzaam|in dienst|verbonden)|(?:heeft|hebben) .{0,40}verlaten|"
    r"n[aã]o (?:trabalha|faz parte) mais|j[aá] n[aã]o (?:trabalha|faz parte)|deixou a",
    # matched against lower-cased text: faster than IGNORECASE
)
# Challenge-response systems: the sender must prove to be a person before mail is delivered.
CHALLENGE = re.compile(
    r"verify (?:that )?you(?:'re| are) (?:a )?(?:human|real|person|not a robot)|"
    r"(?:confirm|verify|prove) (?:that )?(?:you are|you're) (?:a )?(?:human|real person)|"
    r"sender verification|verification (?:request|required|needed)|"
    r"(?:held|queued|quarantined|pending) (?:\w+ )?(?:for|pending|until) (?:your )?"
    r"(?:verification|approval|confirmation)|challenge[- ]response|"
    r"(?:complete|click).{0,60}(?:so|to ensure|in order) (?:that )?(?:your|the) "
    r"(?:message|e-?mail) (?:is|will be|gets|can be) delivered|"
    r"approved senders? list|whitelist(?:ed)? senders|(?:spam ?arrest|boxbe|mailwasher|"
    r"sanebox|choicemail|permitmail)|"
    r"has not been verified|to release your message|confirm your (?:message|address|"
    r"e-?mail address)|\btmda\b|being held (?:because|until|pending)|"
    r"pending folder|pending queue|waiting for (?:your )?approval|zurückgehalten|"
    r"einmalige[n]? bestätigung|senders i have approved|only accept (?:messages|e-?mail|mail) "
    r"from (?:senders|people|addresses)|"
    r"not a robot|kein roboter|pas un robot|no es un robot|non è un robot|geen robot|"
    r"não é um robô|absenderadresse (?:zu )?bestätigen|vorläufig zurückgehalten|"
    r"pendiente de aprobación|verificación de remitente|en attente de validation|"
    r"in attesa di approvazione|"
    r"bestätigen sie,? dass sie ein mensch sind|absenderverifizierung|bestätigen sie ihre "
    r"e-?mail-adresse|nachdem der absender bestätigt|dass er ein mensch ist|"
    r"v[ée]rifi(?:er|cation) de l'exp[ée]diteur|confirmez que vous [eê]tes (?:un )?humain",
    # matched against lower-cased text: faster than IGNORECASE
)


# Words only challenge-response systems use (no person writes them in a reply).
CHALLENGE_SYSTEM = re.compile(
    r"challenge[- ]response|spam ?arrest|boxbe|mailwasher|sanebox|choicemail|permitmail|"
    r"\btmda\b|verify (?:that )?you(?:'re| are) (?:a )?(?:human|real person|not a robot)|"
    r"(?:held|queued|pending) (?:\w+ )?(?:for|until) (?:your )?(?:verification|approval)|"
    r"to release your message|has not been verified|vorläufig zurückgehalten|"
    r"vorübergehend zurückgehalten|pending folder|pending queue|waiting for approval|"
    r"senders i have approved|"
    r"pendiente de aprobación|en attente de validation|in attesa di approvazione"
)


def auto_markers(
    message: Message | Headers, subject: str, *, answers_ours: bool
) -> tuple[str, ...]:
    """The headers and subject that mark an automatic answer (RFC 3834 and the common
    private ones). ``answers_ours``: it has In-Reply-To/References, as a person's reply has."""
    reasons = []
    auto_submitted = header(message, "Auto-Submitted").lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        reasons.append(f"Auto-Submitted: {auto_submitted[:40]} (RFC 3834)")
    for name in (
        "X-Autoreply",
        "X-Autorespond",
        "X-Autoresponder",
        "X-AutoReply-From",
        "X-Autogenerated",
        "X-Auto-Reply",
        "X-Vacation",
        "X-FC-MachineGenerated",
    ):
        if header(message, name):
            reasons.append(f"{name} header")
    precedence = header(message, "Precedence").lower()
    if precedence in ("auto_reply", "junk"):
        reasons.append(f"Precedence: {precedence}")
    elif precedence in ("bulk", "list") and not answers_ours:
        reasons.append(f"Precedence: {precedence}, answering none of our messages")
    if header(message, "X-MS-Exchange-Generated-Message-Source") or header(
        message, "X-MS-Exchange-Inbox-Rules-Loop"
    ):
        reasons.append("Exchange auto-generated message header")
    if "autoresponder" in header(message, "X-POST-MessageClass").lower():
        reasons.append("X-POST-MessageClass: Autoresponder")
    prefix = AUTO_SUBJECT.search(subject.lower())
    if prefix:
        reasons.append(f"subject starts with {prefix.group(1)!r}")
    if header(message, "Return-Path").strip() == "<>" and reasons:
        reasons.append("null Return-Path (RFC 3834 3.3)")
    return tuple(reasons)


_NEW_ADDRESS_CUE = re.compile(
    r"(?:new (?:e-?mail|address)|can (?:now )?be reached at|(?:is )?now at|reach (?:him|her|them|"
    r"me) at|write to (?:him|her|them|me) at|künftig unter|nueva dirección|nouvelle adresse)"
    r"\W{0,20}([\w.+'-]+@[\w-]+(?:\.[\w-]+)+)",
    re.IGNORECASE,
)


_ANY_ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")


def new_address(text: str, sender: str | None) -> str | None:
    """An address a "no longer with us" message gives to write to instead, if any: the one
    it calls the person's new address, else the first it names."""
    cued = _NEW_ADDRESS_CUE.search(text[:20_000])
    if cued is not None:
        return cued.group(1).strip(".").lower()
    for found in _ANY_ADDRESS.finditer(text[:20_000]):
        address = found.group(0).strip(".").lower()
        if address != (sender or "").lower():
            return address
    return None


__all__ = [
    "AUTO_SUBJECT",
    "CHALLENGE",
    "CHALLENGE_SYSTEM",
    "LEFT_ORGANIZATION",
    "OUT_OF_OFFICE",
    "auto_markers",
    "new_address",
]
