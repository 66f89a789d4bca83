"""Languages of the web pages: English (the message ids) and French.

The French catalog is kept as a .po file (locale/fr/LC_MESSAGES/messages.po) and compiled
in memory with Babel when the pages are built, so no .mo file is kept in git. To refresh
the template after adding messages: `pybabel extract -F babel.cfg -o
app/adapters/web/locale/messages.pot .` then `pybabel update -i ... -d app/adapters/web/locale`.

The language is the user's setting, else the first supported one in Accept-Language, else
English. Times are stored in UTC and shown in a site's time zone.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from app.domain.users import LOCALES

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT = "en"


def load_catalogs(directory: Path = LOCALE_DIR) -> dict[str, gettext.NullTranslations]:
    """One translations object per language; English needs none (its ids are the text)."""
    catalogs: dict[str, gettext.NullTranslations] = {DEFAULT: gettext.NullTranslations()}
    for locale in LOCALES:
        po = directory / locale / "LC_MESSAGES" / "messages.po"
        if locale == DEFAULT or not po.exists():
            continue
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        buffer = io.BytesIO()
        write_mo(buffer, catalog, use_fuzzy=False)
        buffer.seek(0)
        catalogs[locale] = gettext.GNUTranslations(buffer)
    return catalogs


def negotiate(accept_language: str | None, setting: str | None = None) -> str:
    """The user's setting, else the best supported language of the header, else English."""
    if setting in LOCALES:
        return setting
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        quality = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = tag.split("-")[0]
        if language in LOCALES and quality > 0:
            ranked.append((-quality, index, language))
    return min(ranked)[2] if ranked else DEFAULT


@dataclass(frozen=True)
class Language:
    """What a page needs to speak one language in one time zone."""

    locale: str
    translations: gettext.NullTranslations
    zone: str = "UTC"

    @property
    def gettext(self) -> Callable[[str], str]:
        return self.translations.gettext

    def when(self, value: datetime | None) -> str:
        """A UTC instant as the site's local time, with the zone's short name."""
        if value is None:
            return ""
        return format_datetime(
            value, "d MMM y, HH:mm zzz", tzinfo=ZoneInfo(self.zone), locale=self.locale
        )

    def with_zone(self, zone: str) -> Language:
        return Language(self.locale, self.translations, zone)


def language(
    catalogs: Mapping[str, gettext.NullTranslations], locale: str, zone: str = "UTC"
) -> Language:
    return Language(locale, catalogs.get(locale, catalogs[DEFAULT]), zone)
