"""A seeded, lazily generated corp: members, customers, kf customers and school parents.

Nothing is stored per customer. Every record is a pure function of (seed, index),
rebuilt on demand, so a corp of a million customers starts as fast as one of ten
and two fakes with the same seed answer byte for byte alike.

Who follows whom is arranged so that both directions are cheap:

- the first ``popular`` customers are followed by every member, so with more members
  than the page size their ``externalcontact/get`` answers come in cursor pages;
- every other customer ``i`` is followed by 1 to 3 consecutive members starting at
  ``i % members``, so a member's customers are found by stepping through ``i`` in
  strides of ``members`` rather than by scanning the corp.
"""

from __future__ import annotations

import functools
import random
from typing import Any

__all__ = ["FakeCorp"]

_MASK64 = (1 << 64) - 1
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

_SURNAMES = [
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"),
    ("杨", "yang"), ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"),
    ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"), ("胡", "hu"),
    ("郭", "guo"), ("何", "he"), ("林", "lin"), ("罗", "luo"), ("高", "gao"),
]  # fmt: skip
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国文斌宇浩然欣怡子轩梓涵"
_TITLES = ["经理", "总监", "主管", "工程师", "采购", "老师", "店长", "顾问", "部长", "总"]
_COMPANIES = [
    ("腾讯", "腾讯科技（深圳）有限公司"),
    ("华为", "华为技术有限公司"),
    ("美团", "北京三快在线科技有限公司"),
    ("京东", "北京京东世纪贸易有限公司"),
    ("小米", "小米科技有限责任公司"),
    ("顺丰", "顺丰控股股份有限公司"),
    ("格力", "珠海格力电器股份有限公司"),
    ("万科", "万科企业股份有限公司"),
]
_DESCRIPTIONS = ["对接采购事务", "采购问题咨询", "售后服务", "年度合同续签", "新品试用", "渠道合作"]
_CORP_TAGS = [
    ("客户等级", ["重要客户", "普通客户", "潜在客户"]),
    ("来源渠道", ["展会", "官网", "老客户推荐", "直播"]),
]
_OWN_TAGS = ["好说话", "价格敏感", "周末联系"]
_RULE_TAGS = [("行为标签", ["高意向", "已复购"])]
_ADD_WAYS = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 16, 201, 202]
#: add_way values where the member started the contact (oper_userid is the member).
_MEMBER_STARTED = {2, 5, 9, 201, 202}
_SCENES = ["wx_ad", "qrcode_shop", "official_menu", "miniprogram"]


def _mix(*parts: int) -> int:
    """splitmix64 over the parts: a fast, well-spread 64-bit hash."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (part & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h


def _token(h: int, length: int) -> str:
    """``length`` characters of base 62 drawn from ``h``, re-mixed every ten."""
    out: list[str] = []
    state = h
    while len(out) < length:
        state = _mix(state, len(out))
        x = state
        for _ in range(10):
            x, r = divmod(x, len(_ALPHABET))
            out.append(_ALPHABET[r])
    return "".join(out[:length])


# Salts, one per kind of random draw, so that draws of different kinds never correlate.
_CUSTOMER, _FOLLOW, _KF, _PARENT, _MEMBER, _LICENCE, _FOLLOWERS = range(1, 8)


class FakeCorp:
    """The data behind a FakeWeCom. All methods are pure and cheap.

    Args:
        seed: the same seed gives the same corp.
        customers: how many customers (10 to 1,000,000 and beyond).
        members: how many members have customer contact.
        popular: how many customers every member follows (they page when
            ``members`` exceeds the page size).
        parents: how many school parents (``externalcontact/get`` school form).
        kf_active_ratio: share of WeChat customers inside kf's 48-hour window.
        unlicensed_ratio: share of members without an interop licence.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        customers: int = 1000,
        members: int = 600,
        popular: int = 3,
        parents: int = 100,
        kf_active_ratio: float = 0.8,
        unlicensed_ratio: float = 0.0,
    ) -> None:
        if customers < 0 or members < 1 or parents < 0 or popular < 0:
            raise ValueError("customers, parents and popular must be >= 0; members >= 1")
        if customers > 999_999_999 or parents > 999_999_999:
            raise ValueError("at most 999,999,999 customers or parents")
        self.seed = seed
        self.customers = customers
        self.members = members
        self.popular = min(popular, customers)
        self.parents = parents
        self.kf_active_ratio = kf_active_ratio
        self.corp_id = "ww" + _token(_mix(seed, 0xC0), 16)
        self.corp_secret = _token(_mix(seed, 0x5E), 43)
        self.userids = [self._make_userid(m) for m in range(members)]
        self._member_index = {u: m for m, u in enumerate(self.userids)}
        self.unlicensed = {m for m in range(members) if self._unit(_LICENCE, m) < unlicensed_ratio}
        # One memo per corp: a member's customer list is stepped out once, then reused
        # by every page of externalcontact/list and batch/get_by_user.
        self.customers_of = functools.lru_cache(maxsize=512)(self._customers_of)
        # Changes made since generation (see "changes" below): empty unless a test
        # changes the corp, so the generated answers stay exactly as they were.
        self._deleted: set[int] = set()
        self._removed: set[tuple[int, int]] = set()
        self._remarks: dict[tuple[int, int], str] = {}

    def __repr__(self) -> str:
        return (
            f"<FakeCorp seed={self.seed} customers={self.customers} members={self.members} "
            f"parents={self.parents}>"
        )

    # -- draws --

    def _unit(self, *parts: int) -> float:
        return _mix(self.seed, *parts) / 2**64

    def _rng(self, *parts: int) -> random.Random:
        return random.Random(_mix(self.seed, *parts))

    # -- members --

    def _make_userid(self, m: int) -> str:
        surname = _SURNAMES[_mix(self.seed, _MEMBER, m) % len(_SURNAMES)][1]
        return f"{surname}{m:04d}"

    def member_index(self, userid: str) -> int | None:
        """The index of member ``userid``, or None for one not in the corp."""
        return self._member_index.get(userid)

    # -- customers --

    def customer_type(self, i: int) -> int:
        """1 for a WeChat user (id starts wm), 2 for a WeCom user (id starts wo)."""
        return 2 if self._unit(_CUSTOMER, i, 1) < 0.3 else 1

    def customer_id(self, i: int) -> str:
        """The ``external_userid`` of customer ``i``."""
        prefix = "wo" if self.customer_type(i) == 2 else "wm"
        return f"{prefix}{_token(_mix(self.seed, _CUSTOMER, i), 20)}C{i:09d}"

    def customer_index(self, external_userid: str) -> int | None:
        """The index behind a customer id, or None if this corp never issued it."""
        if len(external_userid) != 32 or external_userid[22] != "C":
            return None
        digits = external_userid[23:]
        if not digits.isdigit():
            return None
        i = int(digits)
        if i >= self.customers or i in self._deleted or self.customer_id(i) != external_userid:
            return None
        return i

    def follower_count(self, i: int) -> int:
        """How many members follow customer ``i``."""
        if i < self.popular:
            return self.members
        u = self._unit(_FOLLOWERS, i)
        return min(self.members, 1 + (u < 0.35) + (u < 0.1))

    def followers(self, i: int) -> list[int]:
        """Member indices following customer ``i``, in the order WeCom lists them."""
        if i < self.popular:
            found = list(range(self.members))
        else:
            start = i % self.members
            found = [(start + j) % self.members for j in range(self.follower_count(i))]
        if self._removed:
            found = [m for m in found if (i, m) not in self._removed]
        return found

    def _customers_of(self, m: int) -> tuple[int, ...]:
        found = set(range(self.popular))
        for j in range(min(3, self.members)):
            first = (m - j) % self.members
            # Customers i with i % members == first whose run of followers reaches m.
            for i in range(first, self.customers, self.members):
                if i >= self.popular and self.follower_count(i) > j:
                    found.add(i)
        if self._deleted or self._removed:
            found = {i for i in found if i not in self._deleted and (i, m) not in self._removed}
        return tuple(sorted(found))

    def _name(self, rng: random.Random) -> str:
        surname = rng.choice(_SURNAMES)[0]
        return surname + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))

    def contact(self, i: int) -> dict[str, Any]:
        """The ``external_contact`` object of customer ``i``."""
        rng = self._rng(_CUSTOMER, i)
        kind = self.customer_type(i)
        ext_id = self.customer_id(i)
        out: dict[str, Any] = {
            "external_userid": ext_id,
            "name": self._name(rng),
            "type": kind,
            "gender": rng.choice((0, 1, 2)),
            "avatar": f"https://wework.qpic.cn/fake/{ext_id[-12:]}/0",
        }
        if kind == 1:
            if rng.random() < 0.7:
                out["unionid"] = "o" + _token(_mix(self.seed, _CUSTOMER, i, 9), 27)
        else:
            out.update(self._wecom_user(rng, i))
        return out

    def _wecom_user(self, rng: random.Random, i: int) -> dict[str, Any]:
        """The fields only a WeCom user (type 2) has: employer, title, external profile."""
        short, full = rng.choice(_COMPANIES)
        return {
            "position": rng.choice(_TITLES),
            "corp_name": short,
            "corp_full_name": full,
            "external_profile": {
                "external_attr": [
                    {"type": 0, "name": "部门", "text": {"value": rng.choice(_DESCRIPTIONS)}},
                    {
                        "type": 1,
                        "name": "官网",
                        "web": {"url": f"https://www.example.com/{i}", "title": short},
                    },
                    {
                        "type": 2,
                        "name": "小程序",
                        "miniprogram": {
                            "appid": "wx" + _token(_mix(self.seed, 77, i), 16),
                            "pagepath": "/pages/index",
                            "title": f"{short}小程序",
                        },
                    },
                ]
            },
        }

    def _relationship(self, i: int, m: int) -> tuple[dict[str, Any], random.Random]:
        """The fields a member's relationship has in both answer shapes, and its rng."""
        rng = self._rng(_FOLLOW, i, m)
        add_way = rng.choice(_ADD_WAYS)
        out: dict[str, Any] = {
            "userid": self.userids[m],
            "remark": self._name(rng) + rng.choice(_TITLES),
            "description": rng.choice(_DESCRIPTIONS),
            "createtime": 1_500_000_000 + rng.randrange(250_000_000),
        }
        if self._remarks and (i, m) in self._remarks:
            out["remark"] = self._remarks[(i, m)]
        if self.customer_type(i) == 1 and rng.random() < 0.5:
            out["remark_corp_name"] = rng.choice(_COMPANIES)[0]
        out["remark_mobiles"] = [f"13{rng.randrange(10**9):09d}" for _ in range(rng.randrange(3))]
        out["oper_userid"] = self.userids[m] if add_way in _MEMBER_STARTED else self.customer_id(i)
        out["add_way"] = add_way
        if rng.random() < 0.3:
            out["state"] = f"外联二维码{rng.randrange(1, 9)}"
        if add_way == 10:
            out["wechat_channels"] = {
                "nickname": f"视频号{rng.randrange(100)}",
                "source": rng.randrange(4),
            }
        return out, rng

    def _tags(self, rng: random.Random) -> list[dict[str, Any]]:
        tags: list[dict[str, Any]] = []
        for g, (group, names) in enumerate(_CORP_TAGS):
            if rng.random() < 0.6:
                k = rng.randrange(len(names))
                tag_id = "et" + _token(_mix(1, g, k), 30)  # the same tag has one id corp-wide
                tags.append(
                    {"group_name": group, "tag_name": names[k], "type": 1, "tag_id": tag_id}
                )
        if rng.random() < 0.3:
            tags.append({"group_name": "个人标签", "tag_name": rng.choice(_OWN_TAGS), "type": 2})
        for g, (group, names) in enumerate(_RULE_TAGS):
            if rng.random() < 0.2:
                k = rng.randrange(len(names))
                tag_id = "st" + _token(_mix(3, g, k), 30)
                tags.append(
                    {"group_name": group, "tag_name": names[k], "type": 3, "tag_id": tag_id}
                )
        return tags

    def follow_user(self, i: int, m: int) -> dict[str, Any]:
        """Member ``m``'s entry in customer ``i``'s ``follow_user`` (with tags)."""
        out, rng = self._relationship(i, m)
        out["tags"] = self._tags(rng)
        return out

    def follow_info(self, i: int, m: int) -> dict[str, Any]:
        """The same relationship as ``batch/get_by_user`` gives it (``tag_id`` only)."""
        out, rng = self._relationship(i, m)
        out["tag_id"] = [t["tag_id"] for t in self._tags(rng) if "tag_id" in t]
        return out

    # -- changes, for callbacks (wecom_async.testing._callbacks pushes the events) --

    def add_customer(self) -> int:
        """A new customer at the next index, followed as its index decides."""
        i = self.customers
        self.customers += 1
        self.customers_of.cache_clear()
        return i

    def delete_customer(self, i: int) -> None:
        """Customer ``i`` is gone for every member."""
        self._deleted.add(i)
        self.customers_of.cache_clear()

    def remove_follower(self, i: int, m: int) -> None:
        """Member ``m`` no longer follows customer ``i``."""
        self._removed.add((i, m))
        self.customers_of.cache_clear()

    def edit_remark(self, i: int, m: int, remark: str) -> None:
        """Member ``m``'s remark on customer ``i`` is now ``remark``."""
        self._remarks[(i, m)] = remark

    # -- kf customers --

    def kf_customer(self, external_userid: str, with_context: bool) -> dict[str, Any] | None:
        """A kf customer's record, or None outside the 48-hour window or unknown."""
        i = self.customer_index(external_userid)
        if i is None or self.customer_type(i) != 1:
            return None
        if self._unit(_KF, i) >= self.kf_active_ratio:
            return None
        contact = self.contact(i)
        out: dict[str, Any] = {
            "external_userid": external_userid,
            "nickname": contact["name"],
            "avatar": contact["avatar"],
            "gender": contact["gender"],
        }
        if "unionid" in contact:
            out["unionid"] = contact["unionid"]
        if with_context:
            rng = self._rng(_KF, i, 2)
            ctx: dict[str, Any] = {
                "scene": rng.choice(_SCENES),
                "scene_param": _token(_mix(self.seed, _KF, i, 3), 8),
            }
            if rng.random() < 0.3:
                scene = rng.randrange(1, 6)
                key = "nickname" if scene <= 3 else "shop_nickname"
                ctx["wechat_channels"] = {key: f"视频号{rng.randrange(100)}", "scene": scene}
            out["enter_session_context"] = ctx
        return out

    # -- school parents --

    def parent_id(self, j: int) -> str:
        """The ``external_userid`` of school parent ``j``."""
        return f"wm{_token(_mix(self.seed, _PARENT, j), 20)}P{j:09d}"

    def parent_index(self, external_userid: str) -> int | None:
        """The index of the school parent ``external_userid``, or None."""
        if len(external_userid) != 32 or external_userid[22] != "P":
            return None
        digits = external_userid[23:]
        if not digits.isdigit():
            return None
        j = int(digits)
        if j >= self.parents or self.parent_id(j) != external_userid:
            return None
        return j

    def parent_detail(self, j: int) -> dict[str, Any]:
        """A parent's school-form answer body (without errcode)."""
        rng = self._rng(_PARENT, j)
        ext_id = self.parent_id(j)
        child = self._name(rng)
        kind = 2 if rng.random() < 0.2 else 1
        contact: dict[str, Any] = {
            "external_userid": ext_id,
            "name": self._name(rng),
            "type": kind,
            "gender": rng.choice((0, 1, 2)),
            "avatar": f"https://wework.qpic.cn/fake/{ext_id[-12:]}/0",
        }
        if kind == 2:
            contact.update(self._wecom_user(rng, j))
        if rng.random() < 0.6:
            contact["unionid"] = "o" + _token(_mix(self.seed, _PARENT, j, 9), 27)
        if rng.random() < 0.7:
            contact["is_subscribe"] = 1  # sent only when subscribed
        contact["subscriber_info"] = {
            "tag_id": [f"TAG_{rng.randrange(20)}" for _ in range(rng.randrange(1, 3))],
            "remark_mobiles": [f"13{rng.randrange(10**9):09d}"],
            "remark": f"{child}-{rng.choice(['爸爸', '妈妈', '爷爷', '奶奶'])}",
        }
        follow_user = []
        for k in range(1 + rng.randrange(2)):
            m = (j + k) % self.members
            entry: dict[str, Any] = {
                "userid": self.userids[m],
                "remark": f"{child}家长",
                "description": "家校沟通",
                "createtime": 1_500_000_000 + rng.randrange(250_000_000),
                "tags": [
                    {"group_name": "年级", "tag_name": f"{rng.randrange(1, 7)}年级", "type": 1}
                ],
                "remark_corp_name": "实验小学",
                # The school page's own sample sends these as JSON numbers: so does the fake.
                "remark_mobiles": [13_000_000_000 + rng.randrange(10**9)],
            }
            if rng.random() < 0.4:
                entry["state"] = f"外联二维码{rng.randrange(1, 9)}"
            follow_user.append(entry)
        return {"external_contact": contact, "follow_user": follow_user}
