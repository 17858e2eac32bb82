"""Reading contacts CSV files: header spellings, every problem by line and column, round trips."""

from __future__ import annotations

import codecs
import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.domain.contacts_csv import (
    ContactRecord,
    FieldEdit,
    ParsedContacts,
    custom_field_key,
    field_edit,
    find_segment,
    parse_contacts,
    segment_names,
    split_tags,
    write_contacts,
)
from outreach.domain.exports import is_filler
from outreach.domain.pipeline import BUILTIN_STAGES

SEGMENTS = ("psychiatrist", "teacher", "clergy")


def parse(text: str | bytes, **kwargs: object) -> ParsedContacts:
    data = text.encode() if isinstance(text, str) else text
    return parse_contacts(data, segments=SEGMENTS, stages=BUILTIN_STAGES, **kwargs)  # type: ignore[arg-type]


def only_problem(text: str | bytes, **kwargs: object) -> str:
    parsed = parse(text, **kwargs)
    assert len(parsed.problems) == 1, parsed.problems
    return parsed.problems[0]


class TestHeaders:
    def test_plain_headers(self) -> None:
        parsed = parse("email,first_name,last_name,segment\nA@X.example.com,Ann,Lee,teacher\n")
        assert parsed.problems == []
        (record,) = parsed.records
        assert (record.email, record.first_name, record.last_name, record.segment) == (
            "A@x.example.com",
            "Ann",
            "Lee",
            "teacher",
        )

    def test_outlook_export(self) -> None:
        text = (
            "Title,First Name,Middle Name,Last Name,Company,Job Title,E-mail Address,"
            "Categories,Business Phone\n"
            "Dr.,Alma,,Reyes,North Bay Psychiatry,Psychiatrist,alma@nb.example.com,"
            "prescriber;met 2025,207-555-0100\n"
        )
        (record,) = parse(text, default_segment="psychiatrist").records
        assert record.title == "Dr."
        assert record.organization == "North Bay Psychiatry"
        assert record.tags == ("prescriber", "met 2025")
        assert record.custom == {"job_title": "Psychiatrist", "business_phone": "207-555-0100"}
        assert "middle_name" not in record.custom  # empty cells are not kept

    def test_google_contacts_export(self) -> None:
        text = (
            "First Name,Last Name,Name Prefix,Organization Name,Organization Title,"
            "E-mail 1 - Value,Labels\n"
            "Grace,Okafor,Pastor,St. Mark's,Senior Pastor,grace@stm.example.org,"
            "clergy ::: * myContacts\n"
        )
        (record,) = parse(text, default_segment="clergy").records
        assert (record.first_name, record.title, record.organization) == (
            "Grace",
            "Pastor",
            "St. Mark's",
        )
        assert record.email == "grace@stm.example.org"
        assert record.tags == ("clergy",)

    def test_utf8_with_bom(self) -> None:
        data = "\ufeffEmail,First Name,Segment\nzoe@x.example.com,Zoë,clergy\n".encode()
        (record,) = parse(data).records
        assert record.first_name == "Zoë"

    def test_semicolon_separated(self) -> None:
        (record,) = parse(
            "email;segment;organization\nb@x.example.com;teacher;School, Inc\n"
        ).records
        assert record.organization == "School, Inc"

    def test_crlf_line_endings(self) -> None:
        parsed = parse("email,segment\r\na@x.example.com,teacher\r\nb@x.example.com,clergy\r\n")
        assert [r.line for r in parsed.records] == [2, 3]

    def test_missing_required_column(self) -> None:
        problem = only_problem("first_name,segment\nAnn,teacher\n")
        assert problem.startswith("line 1: missing required column 'email' (accepted headers:")
        assert "emailaddress" in problem

    def test_missing_segment_column_suggests_the_option(self) -> None:
        problem = only_problem("email\na@x.example.com\n")
        assert "missing required column 'segment'" in problem and "--segment" in problem

    def test_two_columns_for_one_field(self) -> None:
        problem = only_problem(
            "Email,E-mail Address,segment\na@x.example.com,b@x.example.com,teacher\n"
        )
        assert problem == (
            "line 1, column 2 (E-mail Address): gives 'email' again, like column 1 (Email); "
            "keep one of them"
        )

    def test_custom_field_keys(self) -> None:
        assert custom_field_key("Years In Practice") == "years_in_practice"
        assert custom_field_key("2nd Office") == "f_2nd_office"


class TestRowProblems:
    HEADER = "email,first_name,segment,timezone\n"

    def test_bad_address(self) -> None:
        problem = only_problem(
            self.HEADER + "ok@x.example.com,A,teacher,\nnot-an-address,B,teacher,\n"
        )
        assert problem.startswith("line 3, column 1 (email): 'not-an-address' is not a valid email")

    def test_unknown_segment_suggests_a_near_one(self) -> None:
        problem = only_problem(self.HEADER + "a@x.example.com,A,techer,\n")
        assert problem == (
            "line 2, column 3 (segment): unknown segment 'techer' "
            "(configured: psychiatrist, teacher, clergy); did you mean 'teacher'?"
        )

    def test_unknown_timezone(self) -> None:
        problem = only_problem(self.HEADER + "a@x.example.com,A,teacher,Europe/Atlantis\n")
        assert problem.startswith("line 2, column 4 (timezone): 'Europe/Atlantis' is not an IANA")

    def test_duplicate_within_the_file_ignores_case(self) -> None:
        problem = only_problem(
            self.HEADER + "a@x.example.com,A,teacher,\nA@X.EXAMPLE.COM,B,clergy,\n"
        )
        assert problem == "line 3, column 1 (email): A@x.example.com is a duplicate of line 2"

    def test_line_break_inside_a_field(self) -> None:
        problem = only_problem(
            self.HEADER + 'a@x.example.com,"Ann\nBcc: evil@x.example.com",teacher,\n'
        )
        assert problem == (
            "line 2, column 2 (first_name): contains a line break or NUL; a field must be one line"
        )

    def test_nul_inside_a_field(self) -> None:
        problem = only_problem(self.HEADER + "a@x.example.com,An\x00n,teacher,\n")
        assert "line 2, column 2 (first_name): contains a line break or NUL" in problem

    def test_line_numbers_count_physical_lines(self) -> None:
        """A quoted multi-line field shifts the lines after it; messages use the file's lines."""
        text = self.HEADER + 'a@x.example.com,"A\nB",teacher,\nbad,C,teacher,\n'
        problems = parse(text).problems
        assert problems[1].startswith("line 4, column 1 (email)")

    def test_windows_1252_bytes_are_read_as_such(self) -> None:
        data = self.HEADER.encode() + "a@x.example.com,Ren\u00e9e \u2019,teacher,\n".encode(
            "cp1252"
        )
        parsed = parse(data)
        assert parsed.encoding == "Windows-1252"
        assert parsed.records[0].first_name == "Ren\u00e9e \u2019"

    def test_a_forced_encoding_names_the_line_it_cant_read(self) -> None:
        data = (
            self.HEADER.encode() + b"a@x.example.com,A,teacher,\nb@x.example.com,Ren\xe9,teacher,\n"
        )
        assert only_problem(data, encoding="utf-8") == (
            "line 3: byte 0xE9 can't be read as UTF-8; give the file's encoding with "
            "--encoding (e.g. windows-1252)"
        )

    def test_a_line_break_in_a_custom_field_is_kept(self) -> None:
        parsed = parse('email,segment,Notes\na@x.example.com,teacher,"one\r\ntwo\rthree"\n')
        assert parsed.problems == []
        assert parsed.records[0].custom == {"notes": "one\ntwo\nthree"}

    def test_nul_in_a_custom_field_is_refused(self) -> None:
        problem = only_problem("email,segment,Notes\na@x.example.com,teacher,a\x00b\n")
        assert problem == "line 2, column 3 (Notes): contains a NUL character"

    def test_wrong_number_of_fields(self) -> None:
        problem = only_problem(self.HEADER + "a@x.example.com,A,teacher\n")
        assert problem == "line 2: 3 fields, but the header has 4"

    def test_unterminated_quote(self) -> None:
        problem = only_problem(self.HEADER + 'a@x.example.com,"Ann,teacher,\n')
        assert problem.startswith("line 2: malformed CSV")

    def test_empty_email_with_other_data(self) -> None:
        assert only_problem(self.HEADER + ",Ann,teacher,\n") == (
            "line 2, column 1 (email): the email address is empty"
        )

    def test_blank_rows_are_skipped(self) -> None:
        parsed = parse(self.HEADER + "\n,,,\na@x.example.com,A,teacher,\n")
        assert parsed.problems == [] and [r.line for r in parsed.records] == [4]

    def test_empty_file(self) -> None:
        assert only_problem(b"").startswith("line 1: the file is empty")

    def test_every_problem_is_reported(self) -> None:
        text = (
            self.HEADER
            + "bad,A,teacher,\nb@x.example.com,B,nope,\nc@x.example.com,C,clergy,Nowhere\n"
        )
        assert [p.split(",")[0] for p in parse(text).problems] == ["line 2", "line 3", "line 4"]

    def test_default_segment_fills_empty_cells(self) -> None:
        parsed = parse(self.HEADER + "a@x.example.com,A,,\n", default_segment="clergy")
        assert parsed.records[0].segment == "clergy"

    def test_unknown_stage(self) -> None:
        problem = only_problem("email,segment,stage\na@x.example.com,teacher,enaged\n")
        assert "unknown stage 'enaged'" in problem and "did you mean 'engaged'?" in problem


class TestTags:
    def test_separators(self) -> None:
        assert split_tags("a; b,c ::: d") == ("a", "b", "c", "d")

    def test_duplicates_and_system_labels_dropped(self) -> None:
        assert split_tags("x ::: * starred ::: x") == ("x",)


names = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=";,:"
    ),
    max_size=20,
).map(str.strip)
records = st.builds(
    ContactRecord,
    line=st.just(0),
    email=st.from_regex(r"[a-z][a-z0-9_]{0,10}@[a-z]{1,8}\.example\.com", fullmatch=True),
    segment=st.sampled_from(SEGMENTS),
    first_name=names.map(lambda s: s or None),
    last_name=names.map(lambda s: s or None),
    organization=names.map(lambda s: s or None),
    timezone=st.sampled_from([None, "UTC", "America/Chicago"]),
    tags=st.lists(
        names.filter(bool).filter(lambda t: not t.startswith("* ")), max_size=3, unique=True
    ).map(tuple),
    custom=st.dictionaries(
        st.sampled_from(["years", "office", "note"]), names.filter(bool), max_size=3
    ),
)


@given(st.lists(records, max_size=8, unique_by=lambda r: r.email.casefold()))
@settings(max_examples=60)
def test_written_files_read_back_the_same(rows: list[ContactRecord]) -> None:
    out = io.StringIO()
    write_contacts(
        [{**r.__dict__, "tags": list(r.tags), "custom": dict(r.custom)} for r in rows], out
    )
    parsed = parse(out.getvalue())
    assert parsed.problems == []
    fields = ("email", "segment", "first_name", "last_name", "organization", "timezone", "tags")
    assert [tuple(getattr(r, f) for f in fields) for r in parsed.records] == [
        tuple(getattr(r, f) for f in fields) for r in rows
    ]
    assert [dict(r.custom) for r in parsed.records] == [dict(r.custom) for r in rows]


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_any_bytes_give_records_or_problems_never_an_exception(data: bytes) -> None:
    parsed = parse(b"email,segment\n" + data)
    assert all(p.startswith("line ") for p in parsed.problems)


class TestEncodings:
    TEXT = "Email,First Name,Segment\nzoe@x.example.com,Zo\u00eb,clergy\n"

    def test_utf16_with_bom(self) -> None:
        parsed = parse(self.TEXT.encode("utf-16"))
        assert (parsed.encoding, parsed.records[0].first_name) == ("UTF-16", "Zo\u00eb")

    def test_utf16_big_endian_tab_separated(self) -> None:
        parsed = parse(codecs.BOM_UTF16_BE + self.TEXT.replace(",", "\t").encode("utf-16-be"))
        assert parsed.records[0].first_name == "Zo\u00eb"

    def test_utf8_with_bom_is_named(self) -> None:
        assert parse(self.TEXT.encode("utf-8-sig")).encoding == "UTF-8 with BOM"

    def test_plain_ascii_is_utf8(self) -> None:
        assert parse("email,segment\na@x.example.com,clergy\n").encoding == "UTF-8"

    def test_unknown_encoding(self) -> None:
        assert only_problem(self.TEXT.encode(), encoding="klingon").startswith(
            "line 1: unknown encoding 'klingon'"
        )

    def test_windows_1250_when_forced(self) -> None:
        data = "email,first_name,segment\nl@x.example.com,\u0141ukasz,clergy\n".encode("cp1250")
        parsed = parse(data, encoding="windows-1250")
        assert (parsed.encoding, parsed.records[0].first_name) == ("Windows-1250", "\u0141ukasz")


# Names in Cyrillic, escaped (they look like Latin letters): "Ivan Petrov"; and three whose
# Windows-1251 bytes hold a well-formed UTF-8 sequence by chance (a capital letter, then a
# Ukrainian i or a yo): "Viktor", "Pyotr", "Nina".
IVAN_PETROV = "\u0418\u0432\u0430\u043d \u041f\u0435\u0442\u0440\u043e\u0432"
VIKTOR = "\u0412\u0456\u043a\u0442\u043e\u0440"
PYOTR = "\u041f\u0451\u0442\u0440"
NINA = "\u041d\u0456\u043d\u0430"
IVAN, MARIA, ANNA = (
    "\u0418\u0432\u0430\u043d",
    "\u041c\u0430\u0440\u0438\u044f",
    "\u0410\u043d\u043d\u0430",
)
PETROV, SMIRNOV = (
    "\u041f\u0435\u0442\u0440\u043e\u0432",
    "\u0421\u043c\u0438\u0440\u043d\u043e\u0432",
)


class TestEncodingGuesses:
    """A file that isn't valid UTF-8 is read in a guessed code page only when nothing says it
    is UTF-8 and the guess is no coin toss: else a problem says so, never mojibake."""

    NAMES = ("Bj\u00f6rn M\u00fcller", "Zo\u00eb \u00c5ngstr\u00f6m", "Jos\u00e9 N\u00fa\u00f1ez")

    @pytest.mark.parametrize("rows", [1, 4, 30])
    def test_a_utf8_file_with_one_stray_windows_byte_stays_utf8(self, rows: int) -> None:
        """One cell edited in Excel: that cell is a problem by its line and column; every
        other name reads as written (not "Bj\u0102\u00b6rn M\u0102\u013dller", in Windows-1250)."""
        text = "email,first_name,segment\n" + "".join(
            f"p{i}@x.example.com,{self.NAMES[i % 3]},clergy\n" for i in range(rows)
        )
        data = text.encode() + "r@x.example.com,Ren\u00e9e,clergy\n".encode("cp1252")
        parsed = parse(data)
        assert parsed.encoding == "UTF-8"
        assert len(parsed.problems) == 1
        assert parsed.problems[0].startswith(
            f"line {rows + 2}, column 2 (first_name): holds a byte that is not UTF-8 (0xE9)"
        )
        assert [r.first_name for r in parsed.records] == [self.NAMES[i % 3] for i in range(rows)]

    def test_one_utf8_line_is_enough_whatever_the_stray_bytes(self) -> None:
        """More stray bytes than UTF-8 letters, but a line of valid UTF-8: still UTF-8."""
        data = "email,first_name,segment\nz@x.example.com,Zo\u00eb,clergy\n".encode() + (
            "r@x.example.com,Ren\u00e9e Br\u00fbl\u00e9,clergy\n".encode("cp1252")
        )
        parsed = parse(data)
        assert parsed.encoding == "UTF-8"
        assert [r.first_name for r in parsed.records] == ["Zo\u00eb"]
        assert len(parsed.problems) == 1
        assert parsed.problems[0].startswith("line 3, column 2 (first_name): holds a byte")

    def test_utf8_sequences_by_chance_leave_a_code_page_file_to_detection(self) -> None:
        """Windows-1251 names pair into UTF-8 sequences by chance, never a whole line."""
        people = [
            (VIKTOR, PETROV),
            (PYOTR, SMIRNOV),
            (NINA, PETROV),
            (IVAN, SMIRNOV),
            (MARIA, PETROV),
            (ANNA, SMIRNOV),
        ]
        text = "email,first_name,last_name,segment\n" + "".join(
            f"p{i}@x.example.com,{first},{last},clergy\n" for i, (first, last) in enumerate(people)
        )
        parsed = parse(text.encode("cp1251"))
        assert (parsed.encoding, parsed.problems) == ("Windows-1251", [])
        assert [(r.first_name, r.last_name) for r in parsed.records] == people

    def test_code_pages_that_tie_with_different_readings_are_refused(self) -> None:
        """A one-row Windows-1251 file reads as well in five code pages, none of them
        Windows-1252 (the first was taken: Windows-1250, garbling every name): each reading
        is shown, and the encoding is asked for."""
        data = f"email,name,segment\ni@x.example.com,{IVAN_PETROV},clergy\n".encode("cp1251")
        problem = only_problem(data)
        assert problem.startswith("line 2: can't tell the file's encoding; it reads as ")
        assert f"{IVAN_PETROV!r} in Windows-1251, " in problem
        for name in ("Windows-1250", "Windows-1253", "Windows-1255", "Windows-1257"):
            assert f" in {name}" in problem
        assert "Windows-1252" not in problem
        assert problem.endswith(
            "; give the one that reads right with --encoding NAME (e.g. --encoding windows-1250)"
        )
        parsed = parse(data, encoding="windows-1251")
        assert (parsed.encoding, parsed.problems) == ("Windows-1251", [])
        assert parsed.records[0].custom["name"] == IVAN_PETROV

    def test_a_tie_with_windows_1252_is_still_windows_1252(self) -> None:
        """N\u00fa\u00f1ez reads as well in Windows-1250 (N\u00fa\u0144ez): Windows-1252 wins."""
        data = "email,last_name,segment\nj@x.example.com,N\u00fa\u00f1ez,clergy\n".encode("cp1252")
        parsed = parse(data)
        assert (parsed.encoding, parsed.records[0].last_name) == ("Windows-1252", "N\u00fa\u00f1ez")


class TestFiller:
    def test_default_values_are_filler_others_are_kept(self) -> None:
        assert is_filler("gender", "Unspecified") and not is_filler("gender", "Female")
        assert is_filler("private", "False") and not is_filler("private", "True")
        assert is_filler("birthday", "0/0/00") and not is_filler("birthday", "3/14/80")

    def test_columns_that_restate_another_are_never_kept(self) -> None:
        for key in ("emaildisplayname", "email2type", "email1label", "initials", "fileas"):
            assert is_filler(key, "anything"), key
        assert not is_filler("email2address", "b@x.example.com")


NAMES, _ = segment_names(
    {"psychiatrist": "Psychiatrists", "teacher": "School counselors", "clergy": "Clergy"},
    {"Pastors": "clergy", "Teachers": "School counselors"},
)


class TestSegmentNames:
    def test_names_labels_and_mapped_labels_in_any_case(self) -> None:
        assert find_segment("psychiatrist", NAMES) == "psychiatrist"
        assert find_segment("school COUNSELORS", NAMES) == "teacher"
        assert find_segment("pastors", NAMES) == "clergy"
        assert find_segment("Teachers", NAMES) == "teacher"  # mapped to a label

    def test_an_unknown_one_is_named_with_a_near_one(self) -> None:
        with pytest.raises(ValueError, match=r"unknown segment 'Psychiatrist\.'.*did you mean"):
            find_segment("Psychiatrist.", NAMES)

    def test_a_mapping_to_no_segment_is_a_problem(self) -> None:
        _, problems = segment_names({"clergy": "Clergy"}, {"Rabbis": "rabbi"})
        assert problems == [
            "import.segment_labels.'Rabbis': 'rabbi' is not a segment (configured: clergy)"
        ]

    def test_labels_column_takes_one_segment_and_keeps_the_rest_as_tags(self) -> None:
        parsed = parse(
            "E-mail 1 - Value,Labels,Tags\n"
            "a@x.example.com,Pastors ::: Board ::: * myContacts ::: * starred,x\n",
            names=NAMES,
            segment_column="Labels",
        )
        assert parsed.problems == []
        (record,) = parsed.records
        assert (record.segment, record.tags) == ("clergy", ("x", "Board"))

    def test_a_label_with_a_separator_in_it_names_its_segment(self) -> None:
        names, _ = segment_names({"teacher": "Teachers, counselors"})
        parsed = parse(
            'Email,Categories\na@x.example.com,"Teachers, counselors"\n',
            names=names,
            segment_column="Categories",
        )
        assert parsed.records[0].segment == "teacher"

    def test_a_row_without_a_segment_label_takes_the_default(self) -> None:
        parsed = parse(
            "Email,Categories\na@x.example.com,Friends\n",
            names=NAMES,
            segment_column="categories",
            default_segment="teacher",
        )
        assert (parsed.records[0].segment, parsed.records[0].tags) == ("teacher", ("Friends",))


class TestAddresses:
    def test_two_addresses_in_one_google_cell(self) -> None:
        (record,) = parse(
            "E-mail 1 - Value,segment\na@x.example.com ::: b@x.example.com,clergy\n"
        ).records
        assert record.email == "a@x.example.com"
        assert record.custom == {"other_emails": "b@x.example.com"}


class TestFieldEdit:
    def test_standard_fields_are_checked_like_cells(self) -> None:
        assert field_edit("segment=Pastors", NAMES) == FieldEdit("segment", "clergy", False)
        assert field_edit("tags=a; b", NAMES) == FieldEdit("tags", ("a", "b"), False)
        assert field_edit("title=", NAMES) == FieldEdit("title", None, False)
        with pytest.raises(ValueError, match="timezone: 'Mars/Base' is not an IANA"):
            field_edit("timezone=Mars/Base", NAMES)
        with pytest.raises(ValueError, match="first_name: contains a line break"):
            field_edit("first_name=A\nBcc: x@x.example.com", NAMES)

    def test_custom_fields(self) -> None:
        assert field_edit("years_in_practice=12", NAMES) == FieldEdit(
            "years_in_practice", "12", True
        )
        assert field_edit("notes=a\r\nb", NAMES) == FieldEdit("notes", "a\nb", True)

    @pytest.mark.parametrize(
        ("assignment", "message"),
        [
            ("frist_name=Ann", "unknown field 'frist_name'; did you mean 'first_name'?"),
            ("First Name=Ann", "unknown field 'First Name': the fields are"),
            ("email=b@x.example.com", "email: the address is who the contact is"),
            ("stage=engaged", "outreach stage set"),
            ("segment=", "segment: every contact belongs to a segment"),
            ("first_name", "write FIELD=VALUE"),
        ],
    )
    def test_refusals(self, assignment: str, message: str) -> None:
        with pytest.raises(ValueError, match=re.escape(message)):
            field_edit(assignment, NAMES)

    def test_an_existing_custom_field_close_to_a_standard_one(self) -> None:
        assert field_edit("titles=x", NAMES, custom=["titles"]).custom


@pytest.mark.parametrize(
    "address",
    [
        "Ann.Lee@Clinic.Example.COM",
        "o'brien+referrals@x.example.org",
        "a@b.example",
        "first.last@sub.domain.example.co.uk",
        "x@localhost",
        "x@invalid",
        "x@example",
        "a..b@x.example.com",
        ".a@x.example.com",
        "a.@x.example.com",
        '"quoted"@x.example.com',
        "ünïcode@x.example.com",
        "a@bü.example.com",
        "a@-bad.example.com",
        "a@x.123",
        "a@" + "d" * 64 + ".example.com",
        "l" * 65 + "@x.example.com",
        "l" * 64 + "@" + ".".join(["d" * 60] * 4) + ".com",
        "a@x.example.com.",
        "a@[127.0.0.1]",
        "a@x..example.com",
        "user@mail.test",
        "Info@Clinic.COM",
        "POSTMASTER@x.example.com",
        "anna@bücher.example",
        "anna@xn--bcher-kva.example",
        "b" * 60 + "@" + ".".join(["ü" * 20] * 8) + ".com",
    ],
)
def test_the_quick_address_check_agrees_with_email_validator(address: str) -> None:
    """normalize_email checks a plain address's local part itself and its domain once: the
    result, or the refusal and its words, are email-validator's own."""
    from email_validator import EmailNotValidError, validate_email

    from outreach.domain.fields import normalize_email

    refusal = ""
    try:
        expected = validate_email(address, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        refusal = str(exc)
    if not refusal:
        assert normalize_email(address) == expected.normalized
        return
    with pytest.raises(ValueError, match="is not a valid email address") as caught:
        normalize_email(address)
    assert refusal in str(caught.value)
