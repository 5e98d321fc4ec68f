"""Shared regex pieces: what a name word looks like, and words that are never names."""

from __future__ import annotations


def words(text: str) -> frozenset[str]:
    """A set of whitespace-separated words (keeps long word lists compact)."""
    return frozenset(text.split())


# A name word: letters of any Latin script (diacritics included), inner apostrophe or hyphen.
NAME_WORD = r"[^\W\d_](?:[^\W\d_]|['’-](?=[^\W\d_])){0,40}"
CAP_WORD = r"(?:[A-ZÀ-ÖØ-ÞĀ-Ž]|Ł|Ś|Ż|Ź|Ć|Ń)(?:[^\W\d_]|['’-](?=[^\W\d_])){0,40}"

# Words that follow "I'm", "this is", "thanks" etc. in ordinary speech and are not names.
COMMON_WORDS = words(
    """
    a an the and or but not no yes so very really just also still here there now then today tomorrow
    sorry unable trying having getting looking writing calling going afraid interested available
    done working new back glad happy sure fine ok okay good great bad urgent broken weird strange
    about regarding for from with to in on at of by is are was were be been being it its it's this
    that these those i me my we our you your he she they them his her their what which who how why
    when where again all any some every each much many more most less again please thanks thank hi
    hello hey dear regards cheers best sincerely team everyone there's waiting wondering confused
    stuck running using seeing following reaching contacting following experiencing customer user
    patient support admin manager billing sales help unfortunately hoping planning able ready call
    ask tell email text ping message contact dm reply install deploy upgrade restart update run
    check open close add remove delete create set use enable disable configure migrate connect
    review see note send make build test fix merge roll try convert explain write compare summarise
    summarize translate draft give show list find describe generate apply take avoid rewrite
    refactor debug optimise optimize suggest recommend outline plan scale bump start stop pause
    resume kill drain rotate provision spin tear meet welcome introducing discover
    """
)


# Chat and note shorthand, apostrophe-less contractions and abbreviations: never names, but
# missing from the English lexicon, so a model's weak name probability must not make them one.
INFORMAL_WORDS = words(
    """
    lol lmao omg omw smh btw pls plz thx thnx ty tyvm u ur im ive id ill dont doesnt didnt cant
    couldnt wont wouldnt shouldnt isnt arent wasnt werent hasnt havent hadnt youre theyre were
    thats whats wheres whos hows its yo ya yea yeah yep yup nope ok okay kk idk imo imho tbh
    asap fyi brb gonna wanna gotta gimme lemme cuz coz tho rn bc nvm np gn gm gr8 xoxo xx haha
    hehe hmm ugh qty attn iban eta fwd cc bcc pm am etc aka vs approx dept tel fax ref misc info
    admin tmrw tmr tonite pic pics msg msgs txt
    """
)

# Lower-case particles inside names ("Jan van der Berg", "Maria dos Santos").
NAME_PARTICLES = words(
    """
    van der den de del della di da do dos das du la le von zu ter ten bin ben al el d' al-
    """
)


# Words that mark a text as being about software: there, a lone capitalised word that the NER
# model calls a person or a place is far more often a product (Jenkins, Consul, Spark).
TECH_WORDS = words(
    """
    install installed installing deploy deployed deployment upgrade upgraded migrate migrated
    connect connected connection configure configured config cluster server servers service services
    api endpoint timeout latency helm chart replicas container containers docker pod pods node nodes
    build release version plugin library sdk client backend frontend repo repository commit branch
    pipeline queue cache restart rollback rolled dashboard alerts metrics cpu memory disk host
    instance database schema query index broker operator daemon cron webhook ssl tls http https dns
    proxy load balancer staging production prod runtime patch app application software platform
    firmware wifi browser button page screen click export import upload download login logout
    password replicas replica batch framework frameworks compiler interpreter bindings parser
    codebase toolchain stdlib repl benchmark benchmarks programming language languages code coding
    script scripts syntax tuple tuples array arrays hash hashes function functions method methods
    variable variables struct regex lambda async concurrency thread threads compile compiled
    laptop smartphone tablet headphones earbuds smartwatch router
    """
)


_NOT_NAME_SUFFIX = (
    "ing",
    "ly",
    "ed",
    "ful",
    "ous",
    "ive",
    "able",
    "ible",
    "ness",
    "ment",
    "tion",
    "sion",
)


def is_name_candidate(word: str) -> bool:
    """True when a word may be part of a name (not a function or common word)."""
    return len(word) > 1 and word.lower() not in COMMON_WORDS


def is_lowercase_name_candidate(word: str) -> bool:
    """Stricter test for lowercase words: common English endings ("taking", "really") are not names."""
    return is_name_candidate(word) and not word.lower().endswith(_NOT_NAME_SUFFIX)
